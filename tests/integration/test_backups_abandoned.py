"""Backups whose process ended without finishing, against the real PostgreSQL ledger and a real ``pg_dump``:
the next run (or ``backup prune``) settles their ``running`` row as failed and removes their partial file,
never touching an attempt that is still running; and a ledger restored from a backup reads that backup's
own row as the catalog does, not as the ``running`` row the dump caught."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.backups.abandoned import ABANDONED, this_process
from marketkeeper.backups.destination import Destination
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.ledger.types import utcnow
from marketkeeper.repositories import unit_of_work
from marketkeeper.services import backups
from marketkeeper.store_set import StoreConfig
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

# A backup of the ledger in a process of its own, so the test can SIGKILL it (and its pg_dump) mid-dump.
_BACKUP = """
import sys
from marketkeeper.backups.destination import Destination
from marketkeeper.services import backups
from marketkeeper.store_set import StoreConfig
from tests.integration.test_cli import run_cli
backups.run_backup(StoreConfig(ledger_url=sys.argv[1]), "ledger", destination=Destination(sys.argv[2]))
"""


@pytest.fixture
def ledger(fresh_pg_url: str) -> str:
    migrate.upgrade(fresh_pg_url)
    engine = create_ledger_engine(fresh_pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g"))
    engine.dispose()
    return fresh_pg_url


@pytest.fixture
def destination(tmp_path: Path) -> Destination:
    return Destination((tmp_path / "backups").as_uri())


def _files(destination: Destination) -> list[str]:
    root = Path(destination.root.path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _row(config: StoreConfig, backup_id: int) -> backups.BackupOutcome:
    return next(b for b in backups.list_backups(config) if b.id == backup_id)


def _wait_for(what: str, ready: object) -> None:
    """Poll ``ready()`` until true (a generous bound only against a hang: nothing here is timed)."""
    deadline = time.monotonic() + 120
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def test_a_backup_process_killed_mid_dump_is_settled_by_the_next_run(ledger: str, destination: Destination) -> None:
    config = StoreConfig(ledger_url=ledger)
    engine = create_ledger_engine(ledger)
    database = sa.engine.make_url(ledger).database
    # pg_dump locks every table before it reads one: a lock held here keeps the dump mid-way until it is killed.
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(sa.text("LOCK TABLE bulk IN ACCESS EXCLUSIVE MODE"))
    process = subprocess.Popen(
        [sys.executable, "-c", _BACKUP, ledger, destination.url],
        start_new_session=True,  # its own process group: the backup process and its pg_dump, nothing else
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def dumping() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            with engine.connect() as conn:
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                        "AND application_name = 'pg_dump' AND wait_event_type = 'Lock'"
                    ),
                    {"db": database},
                ).scalar_one()
            return bool(waiting) and any(".partial-" in f for f in _files(destination))

        _wait_for("pg_dump waiting mid-dump with a partial file", dumping)
        os.killpg(process.pid, signal.SIGKILL)  # the backup process and its pg_dump, as an OOM kill would
        assert process.wait() == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        blocker.rollback()
        blocker.close()
        engine.dispose()

    (killed,) = backups.list_backups(config)
    assert killed.status == "running" and killed.finished_at is None  # what the killed process left
    (partial,) = _files(destination)
    assert partial.startswith("ledger/.partial-") and partial.endswith(f"-{killed.id}.dump")

    backup = backups.run_backup(config, "ledger", destination=destination)

    settled = _row(config, killed.id)
    assert settled.status == "failed" and settled.error == ABANDONED and settled.finished_at is not None
    assert backup.status == "succeeded"
    assert _files(destination) == [str(Path(destination.path(backup.location).path).relative_to(destination.root.path))]


def test_prune_settles_only_attempts_that_cannot_still_be_running(
    ledger: str, destination: Destination, tmp_path: Path
) -> None:
    config = StoreConfig(ledger_url=ledger)
    now = utcnow()
    elsewhere = {"host": "another-worker", "pid": 1, "started": 0.0}
    engine = create_ledger_engine(ledger)
    with unit_of_work(engine) as repos:

        def attempt(process: dict[str, object] | None, age: timedelta) -> int:
            run = repos.backups.start(
                store="ledger", kind="pg_dump-custom", location=destination.url, process=process, started_at=now - age
            )
            return int(run.id)

        live = attempt(this_process(), timedelta(days=3))  # this very process: running, whatever its age
        recent_elsewhere = attempt(elsewhere, timedelta(hours=1))  # cannot be asked about: young, so running
        old_elsewhere = attempt(elsewhere, timedelta(days=2))
        before_0008 = attempt(None, timedelta(days=2))
    engine.dispose()

    assert backups.prune_backups(config, dry_run=True, destination=destination).settled == ()
    env = {"DATABASE_URL": ledger, "MARKETKEEPER_BACKUP_URL": destination.url}
    pruned = run_cli("backup", "prune", env=env, cwd=tmp_path)

    assert pruned.returncode == 0, pruned.stderr
    settled = ", ".join(map(str, sorted([old_elsewhere, before_0008])))
    assert f"settled 2 abandoned backup(s) as failed (their process ended): {settled}" in pruned.stdout
    status = {b.id: (b.status, b.error) for b in backups.list_backups(config)}
    assert status[live] == ("running", None) and status[recent_elsewhere] == ("running", None)
    assert status[old_elsewhere] == ("failed", ABANDONED) and status[before_0008] == ("failed", ABANDONED)


def test_a_ledger_restored_from_a_backup_reads_that_backups_row_as_the_catalog_does(
    ledger: str, destination: Destination
) -> None:
    config = StoreConfig(ledger_url=ledger)
    backup = backups.run_backup(config, "ledger", destination=destination)
    new = f"{sa.engine.make_url(ledger).database}_restored"
    try:
        said = backups.restore_backup(config, backup.id, new, destination=destination)

        assert said.endswith(f"; its row of backup {backup.id} reads succeeded, as in the catalog")
        restored = create_ledger_engine(sa.engine.make_url(ledger).set(database=new).render_as_string(False))
        with restored.connect() as conn:
            row = conn.execute(
                sa.text("SELECT status, sha256, size_bytes, finished_at IS NOT NULL FROM backup_runs WHERE id = :id"),
                {"id": backup.id},
            ).one()
        restored.dispose()
        assert tuple(row) == ("succeeded", backup.sha256, backup.size, True)
    finally:
        admin = create_ledger_engine(ledger, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{new}" WITH (FORCE)'))
        admin.dispose()
