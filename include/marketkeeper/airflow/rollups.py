"""What the ``performance_rollups`` tasks do, kept out of the DAG file: pick the bots and days, roll one bot up.

Stores come from Airflow Connections (:mod:`marketkeeper.airflow.stores`); the rollup itself is
:func:`marketkeeper.rollups.rollup_bot`, the same function ``marketkeeper rollup`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
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
    from sqlalchemy.pool import NullPool

    from marketkeeper.airflow.stores import ledger_url
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.rollups import list_bot_ids

    engine = create_ledger_engine(ledger_url(), poolclass=NullPool)
    try:
        return list_bot_ids(engine, [s for s in selected if s.strip()])
    finally:
        engine.dispose()


def rollup(bot_id: str, first: date, last: date, *, window_days: int | None) -> dict[str, Any]:
    """Roll one bot up over ``first..last`` into the ledger (and InfluxDB when configured); a short report."""
    from sqlalchemy.pool import NullPool

    from marketkeeper.airflow.stores import NOT_CONFIGURED, influxdb_client, ledger_url
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.rollups import rollup_bot

    influxdb = influxdb_client()
    engine = create_ledger_engine(ledger_url(), poolclass=NullPool)
    try:
        rows = rollup_bot(
            engine,
            bot_id,
            first,
            last,
            window_days=window_days,
            influxdb=None if influxdb is NOT_CONFIGURED else influxdb,
        )
    finally:
        engine.dispose()
        if influxdb is not NOT_CONFIGURED:
            influxdb.close()
    latest = rows[-1].as_dict()
    return {
        "bot_id": bot_id,
        "bot": latest["bot"],
        "start": first.isoformat(),
        "end": last.isoformat(),
        "days": (last - first + timedelta(days=1)).days,
        "trades": sum(r.stats.count for r in rows),
        "latest": latest,
        "influxdb": influxdb is not NOT_CONFIGURED,
    }
