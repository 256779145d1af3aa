"""
### ohlcv_downsample

Keeps every market's derived tiers (`derived` in the markets declaration: by default 5m 15m 1h 4h 1d 1w 1M of a
1m base) equal to a resample of its stored base series.

* **Scheduled on the candle Asset events** that `ohlcv_ingest` and `ohlcv_gaps` emit through the alias
  `marketkeeper_candles`: a run recomputes exactly the buckets, in every tier, that hold a base candle of the
  events' written ranges (`extra.start` .. `extra.end`), so a gap filled days later makes its buckets complete.
  Only closed buckets are written; a bucket that had not closed stays pending.
* **Daily at 02:30 UTC** (and on a manual trigger) the run is the reconciliation pass instead: it recomputes
  every pending downsample, i.e. any base range written since its tiers were computed (a CLI ingest, a failed
  run, a bucket that closed without new data).
* One mapped **downsample** task per batch of markets of one exchange (`batch_size` param, else
  `MARKETKEEPER_BATCH_SIZE`, else 50); each market under its base series' lock. A market that fails does not
  stop the others; the task fails at the end naming it, and a retry redoes only the failed ones.

`marketkeeper downsample -e X -s Y --start ... --end ...` runs the same service for one market and range.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, task

from marketkeeper.airflow.dag_glue import CANDLES_ALIAS, batch_size_param, fail_fast, marketkeeper_dag


@task(task_id="plan")
def plan(**context: Any) -> list[dict[str, Any]]:
    """The triggering events' ranges (else the pending downsamples), in batches of markets."""
    from marketkeeper.airflow.downsample import event_extras, plan_downsample

    with fail_fast():
        return plan_downsample(event_extras(context), context["params"].get("batch_size"))


@task(map_index_template="{{ map_label }}")
def downsample(batch: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """Recompute the batch's ranges in every tier of each market."""
    from marketkeeper.airflow.downsample import downsample_batch

    return downsample_batch(batch, context)


@marketkeeper_dag(
    "ohlcv_downsample",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("30 2 * * *", timezone="UTC"), assets=[CANDLES_ALIAS]),
    doc=__doc__,
    tags=["ohlcv", "tiers"],
    timeout=timedelta(hours=2),
    retries=2,
    retry_delay=timedelta(minutes=2),
    params={"batch_size": batch_size_param()},
)
def ohlcv_downsample() -> None:
    downsample.expand(batch=plan())


ohlcv_downsample()
