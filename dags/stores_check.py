"""
### stores_check

Round-trips every marketkeeper store through its Airflow Connection: the ledger (`marketkeeper_ledger`,
required), InfluxDB (`marketkeeper_influxdb_default`) and Redis (`marketkeeper_redis_default`).

* A configured store that does not answer **fails** its task, naming the store, its target and the cause.
* A store whose connection is not defined is **skipped** (InfluxDB and Redis are optional).
* `summary` logs one line per store; it fails the run if any check failed.

Runs hourly so a dead store shows up before the data DAGs trip over it; trigger it by hand after changing a
connection. Safe to run any time: it only reads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import task

from marketkeeper.airflow.dag_glue import marketkeeper_dag

STORES = ("ledger", "influxdb", "redis")


def _check_task(store: str) -> Any:
    @task(task_id=f"check_{store}", execution_timeout=timedelta(minutes=2))
    def check() -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowSkipException

        from marketkeeper.airflow.dag_glue import fail_fast
        from marketkeeper.airflow.stores import Store, check_store

        with fail_fast():
            health = check_store(Store(store))
        if not health.configured:
            raise AirflowSkipException(f"{store} is not configured: {health.error}")
        return health.as_dict()

    return check()


@task(trigger_rule="none_failed")
def summary(**context: Any) -> list[dict[str, object]]:
    """Log every store's answer; a store whose check was skipped is reported as not configured."""
    import logging

    log = logging.getLogger("airflow.task")
    # One pull for all checks: a skipped check has no XCom, and pulling it alone would log a 404 as an error.
    results = context["ti"].xcom_pull(task_ids=[f"check_{store}" for store in STORES])
    report: list[dict[str, object]] = []
    for store, result in zip(STORES, results, strict=True):
        if result is None:
            log.info("%-9s not configured", store)
            report.append({"store": store, "configured": False})
        else:
            log.info("%-9s ok  %8.1f ms  %s  %s", store, result["latency_ms"], result["version"], result["target"])
            report.append(result)
    return report


@marketkeeper_dag(
    "stores_check",
    schedule="@hourly",
    doc=__doc__,
    tags=["health"],
    timeout=timedelta(minutes=15),
    retries=2,
    retry_delay=timedelta(minutes=1),
)
def stores_check() -> None:
    [_check_task(store) for store in STORES] >> summary()


stores_check()
