"""Backup attempts whose process ended without finishing (SIGKILL, OOM, a lost machine): their ``running`` row
and ``.partial-`` file stay behind, since nothing in that process ran again. The next backup run and
``backup prune`` settle them: the row becomes ``failed`` (:data:`ABANDONED`) and the partial file is removed.

An attempt is still running while its process is: a row records the host, pid and start time of the process
that runs it (``backup_runs.process``). On this host the process is asked for directly (the pid alive with
the same start time: a reused pid is another process; host names must tell machines and containers apart,
as Docker's default ones do). A row from another host, or one without a process
(written before migration 0008), cannot be asked about: it is presumed running until it is older than
``MARKETKEEPER_BACKUP_ABANDON_AFTER`` (a day by default, longer than any backup here takes).

A ledger restored from a backup holds that backup's own row as the dump saw it, ``running``:
:func:`settle_restored_copy` sets it to what the catalog says (a drill's scratch copy is dropped unchanged).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from marketkeeper.backups.destination import Destination
from marketkeeper.backups.errors import BackupError
from marketkeeper.ledger.types import utcnow

if TYPE_CHECKING:
    from marketkeeper.ledger.models import BackupRun

__all__ = ["ABANDONED", "settle_abandoned", "settle_restored_copy", "still_running", "this_process"]

log = logging.getLogger(__name__)

ABANDONED = "abandoned: the backup process ended without finishing"
#: Start times of one process read twice agree to the clock tick; a different process started within this
#: window under the same pid is not a case worth telling apart.
_SAME_START = 1.0


def this_process() -> dict[str, Any]:
    """What identifies the current process for :func:`still_running` (host, pid, start time)."""
    import psutil  # Airflow's own dependency: portable start times, where /proc is Linux-only

    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}


def still_running(
    process: Mapping[str, Any] | None, started_at: datetime, *, now: datetime, timeout: timedelta
) -> bool:
    """Whether the attempt started at ``started_at`` by ``process`` may still be running (when in doubt: yes)."""
    if process and process.get("host") == socket.gethostname():
        import psutil

        try:
            found = psutil.Process(int(process["pid"]))
            return (
                found.status() != psutil.STATUS_ZOMBIE
                and abs(found.create_time() - float(process["started"])) < _SAME_START
            )
        except psutil.NoSuchProcess:
            return False
        except (psutil.AccessDenied, KeyError, TypeError, ValueError):
            pass  # cannot be asked about: the timeout decides
    return now - started_at < timeout


def settle_abandoned(
    repos: Any, destination: Destination, *, timeout: timedelta, store: str | None = None
) -> list[int]:
    """Mark every abandoned ``running`` attempt (of ``store``, or of every store) ``failed`` and remove its
    partial file; an attempt that may still be running is left alone. The ids settled.

    :param repos: the unit of work's repositories (committed by the caller).
    :param destination: the backup destination of this run (its connection reaches the rows' locations).
    """
    now = utcnow()
    settled = []
    for run in repos.backups.running(store):
        if still_running(run.process, run.started_at, now=now, timeout=timeout):
            continue
        error = ABANDONED
        name = (run.details or {}).get("file")
        if name:
            where = (
                destination
                if run.location == destination.url
                else Destination(run.location, conn_id=destination.conn_id)
            )
            try:
                removed = where.discard_partials(run.store, str(name))
            except BackupError as exc:  # recorded on the row: the file is named for whoever removes it by hand
                error = f"{ABANDONED}; {exc}"
            else:
                for location in removed:
                    log.info("removed %s, left by abandoned backup %d", location, run.id)
        repos.backups.fail(run, error)
        log.warning("backup %d of %s (started %s): %s", run.id, run.store, run.started_at, error)
        settled.append(run.id)
    return settled


def settle_restored_copy(ledger_url: str, run: BackupRun) -> bool:
    """In the ledger at ``ledger_url``, just restored from ``run``, set ``run``'s own row to its status, file
    and checksum in the catalog; whether the copy held it ``running``."""
    from sqlalchemy.pool import NullPool

    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    engine = create_ledger_engine(ledger_url, poolclass=NullPool)  # one use: no connection kept on the file
    try:
        with unit_of_work(engine) as repos:
            return bool(repos.backups.settle_restored_copy(run))
    finally:
        engine.dispose()
