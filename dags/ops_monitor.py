"""
### ops_monitor

Every 5 minutes: measures every active series, store and backup (`marketkeeper status` shows the same
figures) and keeps the `alerts` table in step with the SLO breaches.

* **evaluate**: a new breach (a series lagging more than its SLO, a gap open longer than a day, a quality
  failure share above the ingest threshold, a store down, a verified backup older than 8 days) opens one
  `alerts` row (severity, series or store, what, since when); a breach still open is never raised again; an
  alert whose breach has ended is resolved. New alerts go out through the notifiers configured by connection
  (`marketkeeper_alerts_smtp`, `marketkeeper_alerts_webhook`; off while the connection does not exist).
* Failed tasks of every marketkeeper DAG become alerts too (the shared task-level failure callback).

SLOs: `MARKETKEEPER_SLO_*` in the workers' environment. Safe to run any time: it only reads the stores and
writes alerts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import task

from marketkeeper.airflow.dag_glue import marketkeeper_dag


@task(execution_timeout=timedelta(minutes=4))
def evaluate(**context: Any) -> dict[str, Any]:
    """Measure, open an alert per new breach, resolve the ended ones, notify."""
    from marketkeeper.airflow.alerting import evaluate_and_alert

    return evaluate_and_alert(context)


@marketkeeper_dag(
    "ops_monitor",
    schedule="*/5 * * * *",
    doc=__doc__,
    tags=["ops", "health"],
    timeout=timedelta(minutes=5),
    retries=2,
    retry_delay=timedelta(seconds=30),
)
def ops_monitor() -> None:
    evaluate()


ops_monitor()
