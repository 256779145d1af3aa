"""Backups and drills of the embedded SQLite ledger (a fresh clone's default), with InfluxDB and Redis not
configured: the ledger is backed up for real, the other stores are skipped without a row claiming success."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from marketkeeper.backups.destination import Destination
from marketkeeper.backups.errors import ChecksumMismatchError, DrillFailedError, NoBackupError, RestoreRefusedError
from marketkeeper.backups.sqlite import sqlite_table_figures
from marketkeeper.ledger import migrate
from marketkeeper.services import backups
from marketkeeper.services.demo import seed_demo
from marketkeeper.settings import Settings
from marketkeeper.store_set import StoreConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    """A migrated SQLite ledger with a seeded paper bot and a table of 1,000 rows."""
    path = tmp_path / "home" / "ledger.sqlite"
    path.parent.mkdir()
    migrate.upgrade(f"sqlite:///{path}")
    seed_demo(StoreConfig(ledger_url=f"sqlite:///{path}"), trades=25, seed=4)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, v TEXT, x REAL)")
        conn.executemany("INSERT INTO bulk VALUES (?, ?, ?)", [(i, f"row {i}", i / 3) for i in range(1000)])
    return path


@pytest.fixture
def config(ledger_file: Path) -> StoreConfig:
    """The stores of a fresh clone: the embedded ledger only (as ``StoreConfig.from_settings`` builds it)."""
    return StoreConfig.from_settings(Settings(database_url=f"sqlite:///{ledger_file}", _env_file=None))


@pytest.fixture
def destination(tmp_path: Path) -> Destination:
    return Destination((tmp_path / "backups").as_uri())


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - a fixed name


def test_the_sqlite_ledger_is_backed_up_and_drilled_and_unconfigured_stores_are_skipped(
    config: StoreConfig, ledger_file: Path, destination: Destination
) -> None:
    outcomes = backups.run_backups(config, destination=destination)

    ledger, influxdb, redis = outcomes
    assert isinstance(ledger, backups.BackupOutcome), ledger
    assert ledger.status == "succeeded" and ledger.kind == "sqlite-backup" and ledger.size
    assert str(influxdb) == "influxdb: not configured, skipped (INFLUXDB_URL not set: candles go to the SQL store)"
    assert str(redis) == "redis: not configured, skipped (REDIS_URL not set: no cache)"
    # Only the ledger has a row: a skipped store claims nothing.
    assert [(b.store, b.status) for b in backups.list_backups(config)] == [("ledger", "succeeded")]
    stored = Path(destination.path(ledger.location).path)
    assert stored.name.endswith(".sqlite") and stored.stat().st_size == ledger.size
    assert not list(stored.parent.glob(".partial-*"))
    assert _count(stored, "bulk") == 1000 and _count(stored, "trades") == 25
    # The figures are those of the snapshot the file holds (its catalog row still "running"), not of the live
    # ledger, which has moved on since (the row "succeeded").
    with sqlite3.connect(ledger_file) as conn:
        (recorded,) = conn.execute("SELECT figures FROM backup_runs").fetchone()
        live = sqlite_table_figures(conn)
    conn.close()
    with sqlite3.connect(stored) as conn:
        assert conn.execute("SELECT status FROM backup_runs").fetchall() == [("running",)]
        assert json.loads(recorded) == sqlite_table_figures(conn)
    conn.close()
    assert live["tables"]["main.backup_runs"] != json.loads(recorded)["tables"]["main.backup_runs"]
    assert live["tables"]["main.bulk"] == {"rows": 1000, "sha256": live["tables"]["main.bulk"]["sha256"]}

    drills = backups.drill_stores(config, destination=destination)

    drilled, *skipped = drills
    assert isinstance(drilled, backups.DrillOutcome) and drilled.passed, drilled
    assert [str(s) for s in skipped] == [str(influxdb), str(redis)]
    (row,) = backups.list_backups(config)
    assert row.status == "verified" and row.rto_seconds is not None


def test_the_drill_compares_the_restored_rows_with_those_recorded(
    config: StoreConfig, ledger_file: Path, destination: Destination
) -> None:
    backup = backups.run_backup(config, "ledger", destination=destination)
    # Rewrite the stored backup with one value changed and its checksum recorded anew: the sha256 passes, the
    # restored rows do not.
    stored = Path(destination.path(backup.location).path)
    with sqlite3.connect(stored) as conn:
        conn.execute("UPDATE bulk SET v = 'changed' WHERE id = 500")
    conn.close()
    digest, size = destination.sha256(backup.location)
    with sqlite3.connect(ledger_file) as conn:
        conn.execute("UPDATE backup_runs SET sha256 = ?, size_bytes = ? WHERE id = ?", (digest, size, backup.id))
    conn.close()

    with pytest.raises(DrillFailedError, match=r"main\.bulk sha256: restored '[0-9a-f]{64}', backup time had"):
        backups.drill_store(config, "ledger", destination=destination)


def test_a_flipped_byte_is_caught_by_verify_and_by_the_drill(config: StoreConfig, destination: Destination) -> None:
    backup = backups.run_backup(config, "ledger", destination=destination)
    stored = Path(destination.path(backup.location).path)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatchError, match="is corrupt"):
        backups.verify_backup(config, backup.id, destination=destination)
    with pytest.raises(DrillFailedError, match="corrupt"):
        backups.drill_store(config, "ledger", destination=destination)
    (row,) = backups.list_backups(config)
    assert row.status == "drill_failed"


def test_a_drill_without_a_backup_is_a_skip(config: StoreConfig, destination: Destination) -> None:
    with pytest.raises(NoBackupError, match="ledger has no complete backup to drill yet"):
        backups.drill_store(config, "ledger", destination=destination)

    outcomes = backups.drill_stores(config, ["ledger"], destination=destination)

    assert [str(o) for o in outcomes] == [
        "ledger: no backup to drill yet, skipped (run `marketkeeper backup run --store ledger`)"
    ]
    assert backups.list_backups(config) == []


def test_restore_writes_a_new_sqlite_file_and_refuses_an_existing_one(
    config: StoreConfig, ledger_file: Path, destination: Destination, tmp_path: Path
) -> None:
    backup = backups.run_backup(config, "ledger", destination=destination)
    before = ledger_file.read_bytes()

    with pytest.raises(RestoreRefusedError, match=f"SQLite file {ledger_file} already exists"):
        backups.restore_backup(config, backup.id, str(ledger_file), destination=destination)
    assert ledger_file.read_bytes() == before

    new = tmp_path / "restored.sqlite"
    said = backups.restore_backup(config, backup.id, str(new), destination=destination)

    assert (
        said
        == f"restored into the new SQLite file {new}; its row of backup {backup.id} reads succeeded, as in the catalog"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "home", "restored.sqlite"]  # no partial file
    assert _count(new, "trades") == 25 and _count(new, "bulk") == 1000
    with sqlite3.connect(new) as conn:  # the copy was taken while its own row was running
        row = conn.execute("SELECT status, sha256, size_bytes FROM backup_runs WHERE id = ?", (backup.id,)).fetchone()
    conn.close()
    assert row == ("succeeded", backup.sha256, backup.size)

    with sqlite3.connect(new) as conn:  # --overwrite replaces the contents of an existing file
        conn.execute("DELETE FROM bulk")
    conn.close()
    said = backups.restore_backup(config, backup.id, str(new), overwrite=True, destination=destination)
    assert said.startswith(f"replaced the contents of the SQLite file {new}; its row of backup {backup.id} reads")
    assert _count(new, "bulk") == 1000
