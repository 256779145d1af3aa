"""What every marketkeeper DAG file shares, defined once: ``default_args``, the common Params, the candles
Asset alias, the map-index label, and the rule that a bad selection fails at once, without retries.

DAG files import this module at the top, so it imports nothing but ``airflow.sdk`` and the standard library:
parsing a DAG file stays cheap and does no I/O.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict

from airflow.sdk import AssetAlias, Param, dag, task

__all__ = [
    "CANDLES_ALIAS",
    "CANDLES_ALIAS_NAME",
    "MAP_LABEL",
    "AssetEvent",
    "airflow_ids",
    "batch_size_param",
    "default_args",
    "emit_asset_events",
    "fail_fast",
    "marketkeeper_dag",
    "markets_param",
    "max_failed_fraction_param",
    "on_task_failure",
    "on_task_success",
    "plan_batches",
    "plan_markets",
    "selection_param",
    "set_map_label",
    "time_param",
]

#: The alias every candle-series Asset event is emitted through; downstream DAGs schedule on it.
CANDLES_ALIAS_NAME: Final = "marketkeeper_candles"
CANDLES_ALIAS: Final = AssetAlias(CANDLES_ALIAS_NAME)
#: The context key each mapped task's ``map_index_template`` renders (``"{{ map_label }}"``).
MAP_LABEL: Final = "map_label"


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Every marketkeeper task's ``on_failure_callback`` (a task-level callback: DAG-level ones are reported
    not to fire in Airflow 3, apache/airflow#63374): an operator alert, then the configured notifiers."""
    from marketkeeper.airflow.alerting import record_task_failure

    record_task_failure(context)


def on_task_success(context: Mapping[str, Any]) -> None:
    """Every marketkeeper task's ``on_success_callback``: resolves the task's open failure alerts."""
    from marketkeeper.airflow.alerting import record_task_success

    record_task_success(context)


def default_args(*, retries: int = 3, retry_delay: timedelta = timedelta(minutes=2)) -> dict[str, Any]:
    """The ``default_args`` of every marketkeeper DAG: owner, retries with exponential backoff, and the
    failure callback that turns a task's final failure into an ``alerts`` row (:func:`on_task_failure`)."""
    return {
        "owner": "marketkeeper",
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "on_failure_callback": on_task_failure,
        "on_success_callback": on_task_success,
    }


#: When every marketkeeper DAG's schedule begins: early enough that ``airflow backfill create`` (and a
#: forced remote backfill) can cover any range of crypto history; ``catchup=False`` keeps the scheduler from
#: creating those runs by itself.
START_DATE: Final = datetime(2017, 1, 1, tzinfo=UTC)


def marketkeeper_dag(
    dag_id: str,
    *,
    schedule: Any,
    doc: str | None,
    tags: list[str],
    timeout: timedelta,
    max_active_runs: int = 1,
    retries: int = 3,
    retry_delay: timedelta = timedelta(minutes=2),
    params: Mapping[str, Param] | None = None,
) -> Callable[..., Any]:
    """The ``@dag`` of a marketkeeper DAG: the shared start date, no catch-up, owner and retries, the file's
    docstring as ``doc_md``, the ``marketkeeper`` tag first."""
    return dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=max_active_runs,
        dagrun_timeout=timeout,
        doc_md=doc,
        tags=["marketkeeper", *tags],
        default_args=default_args(retries=retries, retry_delay=retry_delay),
        params=dict(params or {}),
    )


def selection_param(title: str, description: str) -> Param:
    """A trigger-form list of names, one per line (markets, bots, accounts); empty = all of them."""
    return Param([], type="array", items={"type": "string"}, title=title, description=description)


def markets_param() -> Param:
    """The trigger form's market selection: labels ``exchange:symbol[:timeframe]``; empty = every active one."""
    return selection_param(
        "Markets", "exchange:symbol or exchange:symbol:timeframe, one per line; empty = every active market."
    )


def batch_size_param() -> Param:
    """Markets per mapped task; empty = ``MARKETKEEPER_BATCH_SIZE`` or the default (read when the run plans)."""
    return Param(
        None,
        type=["null", "integer"],
        minimum=1,
        maximum=1000,
        title="Markets per task",
        description="Markets each mapped task handles, one at a time; empty = MARKETKEEPER_BATCH_SIZE or 50.",
    )


def max_failed_fraction_param() -> Param:
    return Param(
        0.01,
        type="number",
        minimum=0,
        maximum=1,
        title="Max failed fraction",
        description="A window whose share of rows failing the quality gate exceeds this fails the task.",
    )


def time_param(title: str, description: str = "", *, date_only: bool = False) -> Param:
    """An optional ISO 8601 time (or, ``date_only``, a day) of the trigger form; UTC when typed without an offset."""
    kind = "date" if date_only else "date-time"
    return Param(None, type=["null", "string"], format=kind, title=title, description=description)


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Turn a :class:`~marketkeeper.errors.ConfigurationError` (a bad declaration, form or connection, which
    no retry can fix) into a task failure without retries, with its one-line message."""
    from airflow.sdk.exceptions import AirflowFailException

    from marketkeeper.errors import ConfigurationError

    try:
        yield
    except ConfigurationError as exc:
        raise AirflowFailException(str(exc)) from exc


def set_map_label(label: str) -> None:
    """Name this mapped task instance in the UI (``map_index_template="{{ map_label }}"``).

    The template renders from the task's live context; the ``**context`` a task receives is only a copy.
    """
    from airflow.sdk import get_current_context

    get_current_context()[MAP_LABEL] = label  # type: ignore[typeddict-unknown-key]


@task(task_id="plan")
def plan_markets(**context: Any) -> list[dict[str, Any]]:
    """Sync the declared markets into the ledger and return the active (or selected) ones, to map over."""
    from marketkeeper.airflow.ingestion import plan_markets as plan

    with fail_fast():
        return plan(context["params"]["markets"])


@task(task_id="plan")
def plan_batches(**context: Any) -> list[dict[str, Any]]:
    """Sync the declared markets into the ledger; the active (or selected) ones in batches of ``batch_size``
    markets of one exchange, to map over (one task per batch, its markets named in the map label)."""
    from marketkeeper.airflow.ingestion import plan_batches as plan

    params = context["params"]
    with fail_fast():
        return [dict(b) for b in plan(params["markets"], params.get("batch_size"))]


def emit_asset_events(context: Mapping[str, Any], events: list[dict[str, Any]]) -> None:
    """Emit each candle-series Asset event (:func:`~marketkeeper.airflow.ingestion.asset_event`) through the
    alias, so downstream DAGs see exactly the series and ranges written."""
    from airflow.sdk import Asset

    for event in events:
        context["outlet_events"][CANDLES_ALIAS].add(Asset(name=event["name"], uri=event["uri"]), extra=event["extra"])


def airflow_ids(context: Mapping[str, Any]) -> dict[str, str]:
    """``dag_id``, ``run_id`` and ``task_id`` of the running task, recorded with the evidence it writes."""
    ti = context["ti"]
    return {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id}


class AssetEvent(TypedDict):
    """One candle-series Asset event: ``name`` and ``uri`` of the Asset, and its ``extra``."""

    name: str
    uri: str
    extra: dict[str, object]
