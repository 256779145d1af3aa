"""The Airflow side of the ``performance_rollups`` tasks: the days a run covers, and the service calls (with
the stores of the Airflow Connections, :func:`marketkeeper.airflow.stores.store_config`) that plan the bots and
roll one up, :mod:`marketkeeper.services.rollups`, the same functions ``marketkeeper rollup`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from marketkeeper.errors import ConfigurationError


def _parse_day(value: object, name: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ConfigurationError(f"param {name} must be a date (YYYY-MM-DD), got {value!r}") from exc


def days_for(context: Mapping[str, Any]) -> tuple[date, date]:
    """The first and last day (both included) a run rolls up.

    The params ``start_date``/``end_date`` when set (``end_date`` defaults to ``start_date``); otherwise the
    UTC day the run's data interval starts on (the daily interval ``[day, day+1)`` starts shortly after
    midnight, so that day is the one that just closed).

    :raises ConfigurationError: only ``end_date`` is set, a date is malformed, or the run has no interval.
    """
    params = context["params"]
    start, end = params.get("start_date"), params.get("end_date")
    if start:
        first = _parse_day(start, "start_date")
        return first, _parse_day(end, "end_date") if end else first
    if end:
        raise ConfigurationError("param end_date needs start_date")
    interval_start = context.get("data_interval_start")
    if interval_start is None:
        raise ConfigurationError("this run has no data interval: trigger it with params start_date/end_date")
    day: date = interval_start.date()
    return day, day


def plan_bots(selected: Sequence[str] = ()) -> list[str]:
    """The ids of the bots to roll up: ``selected`` (ids or unique names), or every bot in the ledger."""
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.rollups import bot_ids

    return bot_ids(store_config(), selected)


def rollup(bot_id: str, first: date, last: date, *, window_days: int | None) -> dict[str, Any]:
    """Roll one bot up over ``first..last`` with this deployment's stores; the report as XCom.

    :func:`marketkeeper.services.rollups.rollup_bot`, the function ``marketkeeper rollup`` calls.
    """
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.rollups import rollup_bot

    return rollup_bot(store_config(), bot_id, first, last, window_days=window_days).as_dict()
