"""
### ohlcv_retention

Deletes candles older than each timeframe's `retention_days` in the markets declaration (none by default):
e.g. `{1m: 90, 5m: 730}` keeps 1m candles 90 days, 5m two years and every other timeframe forever.

* **Never a base candle that is not safely downsampled**: a range is deleted only when no pending downsample
  overlaps it and every tier computed from it holds exactly its candles (`source_count`, bucket by bucket);
  otherwise the delete stops there and the log says what was held back and why.
* Deletes by series and time range (InfluxDB `DELETE ... WHERE` the series' tags and time; PostgreSQL in
  chunks of about a week of 1m rows, each a short transaction), under the market's series lock.
* Moves each series' retention horizon, which gap detection starts from: a deleted range is never a gap, and
  `ohlcv_gaps` never backfills it again.

`marketkeeper retention --dry-run` prints the same plan without deleting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, task

from marketkeeper.airflow.dag_glue import marketkeeper_dag


@task
def apply(**context: Any) -> dict[str, Any]:
    """Plan and apply every declared retention (only plan with the dry_run param)."""
    from marketkeeper.airflow.retention import apply_retention_task

    return apply_retention_task(dry_run=bool(context["params"]["dry_run"]))


@marketkeeper_dag(
    "ohlcv_retention",
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC"),
    doc=__doc__,
    tags=["ohlcv", "retention"],
    timeout=timedelta(hours=2),
    retries=2,
    retry_delay=timedelta(minutes=5),
    params={"dry_run": Param(False, type="boolean", title="Dry run", description="Only log what would go.")},
)
def ohlcv_retention() -> None:
    apply()


ohlcv_retention()
