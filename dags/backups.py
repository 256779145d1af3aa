"""
### backups

Backs up every store once a day, one mapped task per store, each a `backup_runs` row; the task of a store
that is not configured here (no Connection) is skipped, saying so, and writes no row:

* **ledger** (`marketkeeper_ledger`): on PostgreSQL, `pg_dump --format=custom` with the client tools of the
  server's major version, on the same snapshot as the per-table row counts and content checksums it records;
  the embedded SQLite file through SQLite's online backup API, the figures computed on the copy.
* **influxdb** (`marketkeeper_influxdb_default`): `influxd backup -portable` through the server's RPC address
  (`INFLUXDB_RPC_ADDRESS`, default its host and port 8088), stored as one tar; a server that cannot do that
  (2.x/3.x) fails the task with "not supported", never a silent success.
* **redis** (`marketkeeper_redis_default`): an RDB taken with `redis-cli --rdb`, checked by `redis-check-rdb`.

Files go to `MARKETKEEPER_BACKUP_URL` through Airflow's object storage (`file://` under
`MARKETKEEPER_HOME/backups` by default; `s3://`, `gs://` ... with `MARKETKEEPER_BACKUP_CONN_ID`), written
under a temporary name and moved into place only when complete and checksummed. A failed or killed backup is
a `failed` row and fails its task. `marketkeeper backup run` does the same from a shell.

**On demand** (Trigger DAG w/ config): pick the `stores` to back up (each must be configured); empty = every
store.
`restore_drill` proves the backups restore; `marketkeeper backup prune` rotates them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import task

from marketkeeper.airflow.backups import plan, stores_param
from marketkeeper.airflow.dag_glue import marketkeeper_dag


@task(map_index_template="{{ map_label }}", execution_timeout=timedelta(hours=3))
def backup(store: str) -> dict[str, Any]:
    """Back one store up; its catalog row as XCom."""
    from marketkeeper.airflow.backups import backup_store
    from marketkeeper.airflow.dag_glue import fail_fast, set_map_label

    set_map_label(store)
    with fail_fast():
        row = backup_store(store)
    set_map_label(f"{store}: backup {row['id']}, {row['size']} bytes")
    return row


@marketkeeper_dag(
    "backups",
    schedule="0 1 * * *",
    doc=__doc__,
    tags=["backups"],
    timeout=timedelta(hours=4),
    retries=2,
    retry_delay=timedelta(minutes=5),
    params={"stores": stores_param("back up")},
)
def backups() -> None:
    backup.expand(store=plan())


backups()
