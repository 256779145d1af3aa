"""
### ohlcv_gaps

Finds every missing candle of every active market, records it in the gap registry (`candle_gaps`) and
re-fetches what the source has, one mapped task per batch of markets of one exchange (`batch_size` param, else
`MARKETKEEPER_BATCH_SIZE`, else 50; the stores are opened once per batch, each market under its own lock).

* **repair** (per market, under the series lock): detect the holes over the window (from the market's
  `first_date`, else its first stored candle, else the last 30 days; or the `start`/`end` or `window_days`
  params) and record them; fetch the `open` gaps, and the `failed` ones past their backoff, through the same
  source, quality gate and store as `ohlcv_ingest`; record each outcome (`filled`, `partially_filled`,
  `source_empty` after repeated empty answers, `failed` with the error); detect again. The series is scanned
  twice: before and after. `source_empty` gaps rest unless **retry_source_empty** is set.
* A market whose repair *raises* (its lock held elsewhere, a store error) does not stop the others; the task
  fails at the end naming it (map label, log, XCom `failed`), and a retry redoes only the markets that did not
  complete (each completed one is recorded in `system_events` and announced again from the record).
* **summary** fails the run naming each market whose gaps failed (the gaps are recorded `failed` with the
  error and retried with backoff on later runs).
* **Assets.** Every range a backfill wrote emits an event through the alias `marketkeeper_candles`, as
  ingestion does (extra: market, timeframe, start, end, rows, origin=backfill).

`marketkeeper backfill --via airflow` triggers this DAG for one series and window.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, task

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
def repair(batch: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """For each market of the batch: detect its holes, backfill the due ones, detect again; emit an Asset event
    per range written; fail at the end naming every market whose repair raised."""
    from marketkeeper.airflow.gaps import repair_batch

    return repair_batch(batch, context)


@task
def summary(batches: list[list[dict[str, Any]]]) -> dict[str, int]:
    """Log one line per market; fail the run if any market's gaps failed."""
    import logging

    from marketkeeper.airflow.gaps import raise_on_failures

    log = logging.getLogger("airflow.task")
    reports = [market for batch in batches for market in batch]
    for r in reports:
        log.info(
            "%s [%s, %s) from %s: %s gap(s) attempted, %s filled, %s written, %s failed, %s missing after",
            r["label"], r["window_start"], r["window_end"], r["origin"], r["gaps_attempted"], r["filled"],
            r["written"], r["failed"], r["missing_after"],
        )  # fmt: skip
    return raise_on_failures(reports)


@marketkeeper_dag(
    "ohlcv_gaps",
    schedule="@daily",
    doc=__doc__,
    tags=["ohlcv", "gaps"],
    timeout=timedelta(hours=6),
    retries=2,
    retry_delay=timedelta(minutes=5),
    params={
        "markets": markets_param(),
        "start": time_param("Window start (UTC)", "Empty = the market's first date (or window_days)."),
        "end": time_param("Window end (UTC)", "Empty = the last closed candle."),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Window (days)",
            description="Check only the last N days; empty = from each market's first date.",
        ),
        "retry_source_empty": Param(
            False,
            type="boolean",
            title="Retry source_empty gaps",
            description="Also retry gaps the source had nothing for (normally they rest for 30 days).",
        ),
        "max_failed_fraction": max_failed_fraction_param(),
        "batch_size": batch_size_param(),
    },
)
def ohlcv_gaps() -> None:
    summary(repair.expand(batch=plan_batches()))


ohlcv_gaps()
