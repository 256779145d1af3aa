"""
### ohlcv_ingest

Ingests closed OHLCV candles of every active market into the candle store, one mapped task per market.

* **Markets** come from `include/config/markets.yaml`, or from the Airflow Variable `marketkeeper_markets`
  (same YAML/JSON shape) when it is set; each run syncs them into the ledger's `markets` table.
* **Interval.** Each run covers its data interval `[data_interval_start, data_interval_end)` (hourly, on an
  interval timetable), so `airflow backfill create --dag-id ohlcv_ingest --from-date ... --to-date ...`
  re-runs any past window safely: the store upserts, the quality gate replaces its own evidence, Redis only
  moves forward.
* **Quality gate.** Every batch passes a Great Expectations checkpoint; failing rows go to
  `quarantined_candles`, each window writes a `data_quality_runs` row, and a window whose failing share exceeds
  `max_failed_fraction` fails the task naming market, range and expectation.
* **Redis** (when `marketkeeper_redis_default` exists): latest candle per series, a message per write, the
  watermark. A Redis failure is logged and recorded as a system event; the candles are still stored.
* **Assets.** Each market that wrote candles emits an event for `marketkeeper://candles/{exchange}/{symbol}/{tf}`
  through the alias `marketkeeper_candles` (extra: market, timeframe, start, end, rows...).
* **Manual runs** (Trigger DAG w/ config): pick markets and an explicit `start`/`end` (ISO 8601, UTC).

Exchange calls share the `exchange_api` pool.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import AssetAlias, CronDataIntervalTimetable, Param, dag, get_current_context, task

CANDLES_ALIAS = AssetAlias("marketkeeper_candles")


@task
def plan(**context: Any) -> list[dict[str, Any]]:
    """Sync the declared markets into the ledger and return the active ones (or the selected ones)."""
    from airflow.sdk.exceptions import AirflowFailException

    from marketkeeper.airflow.ingestion import plan_markets
    from marketkeeper.errors import ConfigurationError

    try:
        return plan_markets(context["params"]["markets"])
    except ConfigurationError as exc:  # a bad declaration or form does not fix itself: fail now, no retries
        raise AirflowFailException(str(exc)) from exc


@task(pool="exchange_api", outlets=[CANDLES_ALIAS], map_index_template="{{ market_label }}")
def ingest(market: dict[str, Any], **context: Any) -> dict[str, object]:
    """Ingest one market over the run's data interval, or over the explicit start/end params."""
    from airflow.sdk import Asset

    from marketkeeper.airflow.ingestion import ingest_market, interval_for, market_label, series_asset_uri
    from marketkeeper.markets import MarketSpec

    spec = MarketSpec.model_validate(market)
    # map_index_template renders from the task's real context; **context is only a copy of it.
    get_current_context()["market_label"] = market_label(spec)
    start, end = interval_for(context)
    ti = context["ti"]
    report = ingest_market(
        market,
        start,
        end,
        max_failed_fraction=float(context["params"]["max_failed_fraction"]),
        airflow={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id},
    )
    if report.written:
        asset = Asset(name=f"candles:{market_label(spec)}", uri=series_asset_uri(spec))
        context["outlet_events"][CANDLES_ALIAS].add(asset, extra=report.as_dict())
    return report.as_dict()


@task
def summary(reports: list[dict[str, object]]) -> dict[str, int]:
    """Log one line per market and return the run's totals."""
    import logging

    log = logging.getLogger("airflow.task")
    totals = {"markets": 0, "fetched": 0, "written": 0, "quarantined": 0, "skipped": 0}
    for report in reports:
        log.info(
            "%s %s [%s, %s): %s written, %s quarantined, %s skipped",
            report["market"], report["timeframe"], report["start"], report["end"],
            report["written"], report["quarantined"], report["skipped"],
        )  # fmt: skip
        totals["markets"] += 1
        for name in ("fetched", "written", "quarantined", "skipped"):
            totals[name] += int(report[name])  # type: ignore[call-overload]
    return totals


@dag(
    dag_id="ohlcv_ingest",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=timedelta(hours=2),
    doc_md=__doc__,
    tags=["marketkeeper", "ohlcv", "ingestion"],
    default_args={
        "owner": "marketkeeper",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
    },
    params={
        "markets": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Markets",
            description="exchange:symbol or exchange:symbol:timeframe, one per line; empty = every active market.",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Start (UTC, inclusive)",
            description="With End, replaces the run's data interval.",
        ),
        "end": Param(None, type=["null", "string"], format="date-time", title="End (UTC, exclusive)"),
        "max_failed_fraction": Param(
            0.01,
            type="number",
            minimum=0,
            maximum=1,
            title="Max failed fraction",
            description="A window whose share of rows failing the quality gate exceeds this fails the task.",
        ),
    },
)
def ohlcv_ingest() -> None:
    summary(ingest.expand(market=plan()))


ohlcv_ingest()
