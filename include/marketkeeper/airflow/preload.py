"""What a task process should find already imported: Great Expectations with the gate's context and
checkpoints built, pandas, SQLAlchemy and the drivers, ccxt, the marketkeeper services and Airflow's task runner.

``scripts/airflow.sh`` names this module in ``[core] mp_forkserver_preload`` and sets the scheduler's
``mp_start_method`` to ``forkserver``: the LocalExecutor's worker processes are then forked from a forkserver
that imported this module once, and each task process Airflow's supervisor forks from a worker inherits all of
it copy-on-write. Without it every task pays ~5 s of imports before its first market (Great Expectations alone
3-6 s on 2 cores). Nothing here opens a connection, starts a thread or reads configuration a task may change:
forking is only safe while the process is single-threaded and holds no sockets, and the stores each task opens
come from its own Connections at run time.
"""

from __future__ import annotations

import importlib
import logging
from typing import Final

log = logging.getLogger(__name__)

#: Imported in this order; the last ones pull in most of the first (listed for a reader, not for the import).
MODULES: Final = (
    "pandas",
    "numpy",
    "sqlalchemy",
    "psycopg",
    "requests",
    "ccxt",
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    "airflow.executors.local_executor",
    # Every task process loads the plugins folder (the ops plugin builds its FastAPI app only for the api-server).
    "airflow.plugins_manager",
    "marketkeeper.ingest",
    "marketkeeper.sources",
    "marketkeeper.stores.influxdb",
    "marketkeeper.stores.sql",
    "marketkeeper.locks",
    "marketkeeper.repositories",
    "marketkeeper.services.batch",
    "marketkeeper.airflow.dag_glue",
    "marketkeeper.airflow.ingestion",
    "marketkeeper.airflow.gaps",
    "marketkeeper.airflow.batches",
    "marketkeeper.airflow.stores",
)


def preload() -> None:
    """Import :data:`MODULES` and build the quality gate's Great Expectations context and checkpoints.

    A failure is logged, never raised: the forkserver would die with it and the scheduler could start no task,
    while a task that finds a module missing imports it itself (and fails there, with the task's own error).
    """
    try:
        from marketkeeper.quality.gx import checkpoint

        # First, before Airflow configures logging (after it, GX's import-time chatter would reach the
        # scheduler's log). The context is in-memory state (ephemeral; analytics off, checkpoint() enforces it).
        checkpoint()
        for name in MODULES:
            importlib.import_module(name)
    except Exception:  # a speed-up only: nothing is lost, every task still imports what it lacks
        log.exception("marketkeeper preload failed; tasks import their modules themselves")


preload()
