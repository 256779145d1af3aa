"""
### ledger_maintenance

Keeps the ledger's own tables from growing without bound, daily at 04:30 UTC:

* deletes, by configured age (`MARKETKEEPER_KEEP_*_DAYS`; defaults: quality runs 90 days, quarantined candles
  180, system events 30, filled gaps 30, audit rows 365), in batches of 5,000 rows that each commit on their own;
* `VACUUM (ANALYZE)` of the tables that churn (candles, quality runs, quarantine, events, gaps, pending
  downsamples) on PostgreSQL; nothing on SQLite.

`marketkeeper maintenance --dry-run` prints what a run would delete.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, task

from marketkeeper.airflow.dag_glue import marketkeeper_dag


@task
def maintain(**context: Any) -> dict[str, Any]:
    """Delete the aged rows and vacuum (only count them with the dry_run param)."""
    from marketkeeper.airflow.retention import maintain_ledger_task

    return maintain_ledger_task(dry_run=bool(context["params"]["dry_run"]))


@marketkeeper_dag(
    "ledger_maintenance",
    schedule=CronTriggerTimetable("30 4 * * *", timezone="UTC"),
    doc=__doc__,
    tags=["ledger", "maintenance"],
    timeout=timedelta(hours=1),
    retries=2,
    retry_delay=timedelta(minutes=5),
    params={"dry_run": Param(False, type="boolean", title="Dry run", description="Only count what would go.")},
)
def ledger_maintenance() -> None:
    maintain()


ledger_maintenance()
