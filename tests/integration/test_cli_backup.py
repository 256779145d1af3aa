"""``marketkeeper backup ...`` as a user runs it, on a ledger of the test's own and a temporary backup folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.ledger import migrate

pytestmark = pytest.mark.integration

STORE_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "INFLUXDB_URL",
    "INFLUXDB_TOKEN",
    "INFLUXDB_BUCKET",
    "MARKETKEEPER_BACKUP_URL",
)


def _cli(*args: str, env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in STORE_VARS}
    return subprocess.run(
        [sys.executable, "-m", "marketkeeper", "backup", *args],
        env={**base, **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_backup_commands_end_to_end_on_the_ledger(fresh_pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(fresh_pg_url)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": fresh_pg_url, "MARKETKEEPER_BACKUP_URL": folder.as_uri(), "MARKETKEEPER_HOME": str(tmp_path)}
    password = sa.engine.make_url(fresh_pg_url).password
    outputs = []

    done = _cli("run", env=env, cwd=tmp_path)
    outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ledger: backup 1 succeeded")

    listed = _cli("list", "--format", "json", env=env, cwd=tmp_path)
    (entry,) = json.loads(listed.stdout)
    assert {"id", "store", "status", "sha256", "size", "location"} <= set(entry)
    assert entry["status"] == "succeeded" and entry["location"].startswith(folder.as_uri())
    assert Path(entry["location"].removeprefix("file://")).stat().st_size == entry["size"]

    verified = _cli("verify", "1", env=env, cwd=tmp_path)
    assert verified.returncode == 0 and "matches" in verified.stdout, verified.stderr

    drilled = _cli("drill", "--store", "ledger", env=env, cwd=tmp_path)
    outputs.append(drilled.stdout + drilled.stderr)
    assert drilled.returncode == 0, drilled.stderr
    assert "ledger: backup 1 verified" in drilled.stdout

    live = sa.engine.make_url(fresh_pg_url).database
    refused = _cli("restore", "1", "--into", str(live), env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: database '{live}' already exists on 127.0.0.1: restore into a new name, or pass --overwrite to "
        "replace its contents"
    ]
    asked = _cli("restore", "1", "--into", str(live), "--overwrite", env=env, cwd=tmp_path, stdin="n\n")
    assert asked.returncode == 1 and "Aborted" in asked.stdout + asked.stderr

    missing = _cli("verify", "99", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    unknown = _cli("run", "--store", "mongo", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "mongo" in unknown.stderr
    not_here = _cli("run", "--store", "redis", env=env, cwd=tmp_path)
    assert not_here.returncode == 1 and "redis is not configured" in not_here.stderr

    pruned = _cli("prune", "--dry-run", env=env, cwd=tmp_path)
    assert pruned.returncode == 0 and "would delete 0, kept 1" in pruned.stdout
    table = _cli("list", env=env, cwd=tmp_path)
    assert "verified" in table.stdout and "RTO" in table.stdout
    outputs += [listed.stdout, table.stdout, refused.stderr]
    assert password and not any(f":{password}@" in text for text in outputs)


def test_backup_run_and_drill_on_a_fresh_clones_defaults_skip_what_is_not_configured(tmp_path: Path) -> None:
    """No DATABASE_URL, INFLUXDB_URL or REDIS_URL: the embedded SQLite ledger under MARKETKEEPER_HOME."""
    env = {"MARKETKEEPER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    migrate.upgrade(f"sqlite:///{tmp_path / 'home' / 'ledger.sqlite'}")
    drilled = _cli("drill", env=env, cwd=tmp_path)  # before any backup: nothing to drill is not a failure
    assert drilled.returncode == 0, drilled.stderr
    assert drilled.stdout.splitlines()[0] == (
        "ledger: no backup to drill yet, skipped (run `marketkeeper backup run --store ledger`)"
    )

    done = _cli("run", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    # Exactly one line per store and nothing else: Airflow's import (object storage) leaves no log line behind.
    ledger, influxdb, redis = done.stdout.splitlines()
    assert ledger.startswith("ledger: backup 1 succeeded, ") and ledger.endswith(".sqlite")
    assert influxdb == "influxdb: not configured, skipped (INFLUXDB_URL not set: candles go to the SQL store)"
    assert redis == "redis: not configured, skipped (REDIS_URL not set: no cache)"
    assert done.stderr == ""
    drilled = _cli("drill", env=env, cwd=tmp_path)
    assert drilled.returncode == 0, drilled.stderr
    assert drilled.stdout.splitlines()[0].startswith("ledger: backup 1 verified, restored in ")
    assert drilled.stderr == ""
    listed = json.loads(_cli("list", "--format", "json", env=env, cwd=tmp_path).stdout)
    assert [(b["store"], b["status"], b["kind"]) for b in listed] == [("ledger", "verified", "sqlite-backup")]
