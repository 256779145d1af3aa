"""
### ohlcv_ingest

Ingests closed OHLCV candles of every active market into the candle store, one mapped task per batch of
markets.

* **Markets** come from `include/config/markets.yaml`, or from the Airflow Variable `marketkeeper_markets`
  (same YAML/JSON shape) when it is set; each run syncs them into the ledger's `markets` table.
* **Interval.** Each run ingests the candles that *closed* during its data interval
  `(data_interval_start, data_interval_end]` (hourly, on an interval timetable): every 1m and 1h candle of the
  hour, and a 4h, 1d, 1w or 1M candle in the run at whose end it closes. Consecutive runs, and
  `airflow backfill create --dag-id ohlcv_ingest --from-date ... --to-date ...` over any range, cover every
  candle exactly once; re-running a window is safe: the store upserts, the quality gate replaces its own
  evidence, Redis only moves forward.
* **Quality gate.** Every batch passes a Great Expectations checkpoint; failing rows go to
  `quarantined_candles`, each window writes a `data_quality_runs` row, and a window whose failing share exceeds
  `max_failed_fraction` fails the task naming market, range and expectation.
* **Redis** (when `marketkeeper_redis_default` exists): latest candle per series, a message per write, the
  watermark. A Redis failure is logged and recorded as a system event; the candles are still stored.
* **Assets.** Each market that wrote candles emits an event for `marketkeeper://candles/{exchange}/{symbol}/{tf}`
  through the alias `marketkeeper_candles` (extra: market, timeframe, start, end of the written open times,
  rows, origin=ingest).
* **Manual runs** (Trigger DAG w/ config): pick markets and an explicit `start`/`end` of open times (ISO
  8601, UTC). A bad selection fails at once, without retries.

* **Batches.** `plan` cuts the markets into batches of one exchange (`batch_size` param, else
  `MARKETKEEPER_BATCH_SIZE`, else 50); each `ingest` task opens the stores once, fetches its markets' hours
  and screens them in one quality-gate run (a window of a union that fails anything is checked alone), then
  writes its markets one at a time, each under its own series lock. The map index names the batch's markets.
  A market that fails does not stop the others: they are written and announced, then the task fails naming
  each failed market and its cause (map label `FAILED n/m: ...`, task log, XCom `failed`). Each completed
  market is recorded in `system_events`, so a retry redoes only the failed ones and announces the others
  again from the record (Airflow drops a failed try's Asset events).

Exchange calls share the `exchange_api` pool: a batch calls one exchange, one market at a time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, task

from marketkeeper.airflow.dag_glue import (
    CANDLES_ALIAS,
    batch_size_param,
    marketkeeper_dag,
    markets_param,
    max_failed_fraction_param,
    plan_batches,
    time_param,
)


@task(pool="exchange_api", outlets=[CANDLES_ALIAS], map_index_template="{{ map_label }}")
def ingest(batch: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """Ingest each market of the batch over the candles that closed in the run's data interval (or the explicit
    start/end); fail at the end naming every market that failed."""
    from marketkeeper.airflow.ingestion import ingest_batch

    return ingest_batch(batch, context)


@task
def summary(batches: list[list[dict[str, Any]]]) -> dict[str, int]:
    """Log one line per market and return the run's totals."""
    import logging

    log = logging.getLogger("airflow.task")
    totals = {"markets": 0, "fetched": 0, "written": 0, "quarantined": 0, "skipped": 0}
    for report in (market for batch in batches for market in batch):
        log.info(
            "%s %s [%s, %s): %s written, %s quarantined, %s skipped",
            report["market"], report["timeframe"], report["start"], report["end"],
            report["written"], report["quarantined"], report["skipped"],
        )  # fmt: skip
        totals["markets"] += 1
        for name in ("fetched", "written", "quarantined", "skipped"):
            totals[name] += int(report[name])
    return totals


@marketkeeper_dag(
    "ohlcv_ingest",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    doc=__doc__,
    tags=["ohlcv", "ingestion"],
    timeout=timedelta(hours=2),
    max_active_runs=4,
    params={
        "markets": markets_param(),
        "start": time_param("Start (UTC, inclusive)", "First open time; with End, replaces the data interval."),
        "end": time_param("End (UTC, exclusive)", "Open times before this."),
        "max_failed_fraction": max_failed_fraction_param(),
        "batch_size": batch_size_param(),
    },
)
def ohlcv_ingest() -> None:
    summary(ingest.expand(batch=plan_batches()))


ohlcv_ingest()
