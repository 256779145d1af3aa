"""
### restore_drill

Proves each store's newest backup restores, weekly (Sunday 03:00 UTC) and on demand; one mapped task per store:

1. fetch the newest complete backup and check every byte against the sha256 recorded when it was written
   (a store with no backup yet, or not configured here, is skipped, saying so: not a failure);
2. restore it into a scratch target: a new PostgreSQL database (`pg_restore`) or SQLite file (the backup
   API), a new InfluxDB database (`influxd restore -portable -newdb`), a throwaway `redis-server` on a free
   loopback port;
3. compare with what the backup should hold, recorded at backup time: per-table row counts and content
   checksums (ledger), per-series daily candle counts and sums of close and volume for candles older than the
   settle interval (InfluxDB), persistent key counts per marketkeeper namespace and the watermarks (Redis);
4. drop the scratch target whatever happens, and record the outcome (`verified` or `drill_failed`), the
   restore time (RTO) and the backup's age (RPO) on the backup's `backup_runs` row.

A failed drill fails its task naming the store and the first difference. `marketkeeper backup drill` does the
same from a shell. **On demand** (Trigger DAG w/ config): pick the `stores`; empty = every store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import task

from marketkeeper.airflow.backups import plan, stores_param
from marketkeeper.airflow.dag_glue import marketkeeper_dag


@task(map_index_template="{{ map_label }}", execution_timeout=timedelta(hours=3))
def drill(store: str) -> dict[str, Any]:
    """Drill one store's newest backup; the outcome as XCom."""
    from marketkeeper.airflow.backups import drill_store
    from marketkeeper.airflow.dag_glue import fail_fast, set_map_label

    set_map_label(store)
    with fail_fast():
        outcome = drill_store(store)
    set_map_label(f"{store}: backup {outcome['backup_id']} verified, RTO {outcome['rto_seconds']:.0f} s")
    return outcome


@marketkeeper_dag(
    "restore_drill",
    schedule="0 3 * * 0",
    doc=__doc__,
    tags=["backups"],
    timeout=timedelta(hours=4),
    retries=2,
    retry_delay=timedelta(minutes=5),
    params={"stores": stores_param("drill")},
)
def restore_drill() -> None:
    drill.expand(store=plan())


restore_drill()
