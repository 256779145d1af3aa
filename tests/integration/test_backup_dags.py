"""The ``backups`` and ``restore_drill`` DAGs run by ``airflow dags test`` on the real servers, with the stores
as Airflow Connections (``scripts/airflow.sh`` derives them from the variables given) and a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.services.demo import seed_demo
from marketkeeper.store_set import StoreConfig
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_URL, REDIS_TEST_URL
from tests.integration import test_backups

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

#: The InfluxDB database of two days of candles that the service-level tests back up.
influx_db = test_backups.influx_db


def _rows(ledger: str) -> list[tuple[int, str, str, str | None]]:
    engine = create_ledger_engine(ledger)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text("SELECT id, store, status, drill_error FROM backup_runs ORDER BY id"))
            return [(r.id, r.store, r.status, r.drill_error) for r in result]
    finally:
        engine.dispose()


def test_backups_then_restore_drill_verify_every_store_and_a_corrupt_backup_fails_the_drill(
    airflow_home: Path,
    fresh_pg_url: str,
    influx_db: str,
    tmp_path: Path,
) -> None:
    migrate.upgrade(fresh_pg_url)
    seed_demo(StoreConfig(ledger_url=fresh_pg_url), trades=20, seed=5)
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": fresh_pg_url,
        "INFLUXDB_URL": INFLUXDB_TEST_URL,
        "INFLUXDB_BUCKET": influx_db,
        "REDIS_URL": REDIS_TEST_URL,
        "MARKETKEEPER_BACKUP_URL": folder.as_uri(),
    }

    done = run_airflow(airflow_home, env, "dags", "test", "backups")
    assert "state=success" in done.stdout + done.stderr
    assert {(store, status) for _, store, status, _ in _rows(fresh_pg_url)} == {
        ("ledger", "succeeded"),
        ("influxdb", "succeeded"),
        ("redis", "succeeded"),
    }

    drilled = run_airflow(airflow_home, env, "dags", "test", "restore_drill")
    assert "state=success" in drilled.stdout + drilled.stderr
    assert {(store, status) for _, store, status, _ in _rows(fresh_pg_url)} == {
        ("ledger", "verified"),
        ("influxdb", "verified"),
        ("redis", "verified"),
    }

    # A byte flipped in the stored ledger backup: the drill of the ledger fails its task and says why.
    (dump,) = folder.glob("ledger/*.dump")
    data = bytearray(dump.read_bytes())
    data[100] ^= 0xFF
    dump.write_bytes(bytes(data))
    failed = run_airflow(
        airflow_home, env, "dags", "test", "restore_drill", "-c", json.dumps({"stores": ["ledger"]}), check=False
    )
    output = failed.stdout + failed.stderr
    assert "state=failed" in output
    assert "restore drill of ledger backup" in output and "corrupt" in output
    (ledger_row,) = [r for r in _rows(fresh_pg_url) if r[1] == "ledger"]
    assert ledger_row[2] == "drill_failed" and "corrupt" in (ledger_row[3] or "")


def test_on_a_fresh_clones_defaults_the_sqlite_ledger_is_backed_up_and_drilled_and_the_rest_skipped(
    airflow_home: Path, tmp_path: Path
) -> None:
    """``make demo`` on a fresh clone: no DATABASE_URL, INFLUXDB_URL or REDIS_URL, the embedded SQLite ledger."""
    ledger = airflow_home / "marketkeeper" / "ledger.sqlite"  # run_airflow's MARKETKEEPER_HOME
    ledger.unlink(missing_ok=True)
    url = f"sqlite:///{ledger}"
    migrate.upgrade(url)
    env = {"MARKETKEEPER_BACKUP_URL": (tmp_path / "backups").as_uri()}

    early = run_airflow(airflow_home, env, "dags", "test", "restore_drill")  # no backup yet: a skip, not a failure
    output = early.stdout + early.stderr
    assert "state=success" in output
    assert "ledger: no backup to drill yet, skipped" in output
    assert _rows(url) == []

    done = run_airflow(airflow_home, env, "dags", "test", "backups")
    output = done.stdout + done.stderr
    assert "state=success" in output
    assert "influxdb: not configured, skipped" in output and "redis: not configured, skipped" in output
    assert [(store, status) for _, store, status, _ in _rows(url)] == [("ledger", "succeeded")]

    drilled = run_airflow(airflow_home, env, "dags", "test", "restore_drill")
    assert "state=success" in drilled.stdout + drilled.stderr
    assert [(store, status) for _, store, status, _ in _rows(url)] == [("ledger", "verified")]
