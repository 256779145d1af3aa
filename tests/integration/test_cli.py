"""The ``marketkeeper`` command line, run as a user runs it, against the real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

pytestmark = pytest.mark.integration

STORE_VARS = ("DATABASE_URL", "REDIS_URL", "INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_BUCKET")


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in STORE_VARS}
    return subprocess.run(
        [sys.executable, "-m", "marketkeeper", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_on_every_command(tmp_path: Path) -> None:
    for args in (["--help"], ["db", "--help"], ["db", "upgrade", "--help"], ["health", "--help"]):
        result = run_cli(*args, env={}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout


def test_db_upgrade_migrates_the_configured_postgresql(fresh_pg_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": fresh_pg_url}
    first = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "empty ->" in first.stdout
    again = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already at" in again.stdout
    assert ":postgres@" not in first.stdout + again.stdout  # the password is never printed
    current = run_cli("db", "current", env=env, cwd=tmp_path)
    assert current.stdout.strip() and "empty" not in current.stdout


def test_db_upgrade_with_nothing_configured_creates_the_embedded_ledger(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", env={"MARKETKEEPER_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "home" / "ledger.sqlite").exists()


def test_health_json_with_every_store_up(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "INFLUXDB_URL": INFLUXDB_TEST_URL,
        "INFLUXDB_BUCKET": INFLUXDB_TEST_DB,
    }
    result = run_cli("health", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    by_store = {s["store"]: s for s in report["stores"]}
    assert set(by_store) == {"ledger", "influxdb", "redis"}
    for store in by_store.values():
        assert store["configured"] and store["ok"]
        assert store["latency_ms"] >= 0
        assert store["version"]
    assert by_store["ledger"]["version"].startswith("postgresql")


def test_health_names_each_store_that_is_down_without_a_traceback(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://postgres:pw@127.0.0.1:1/nowhere",
        "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
        "INFLUXDB_URL": "http://127.0.0.1:1",
    }
    result = run_cli("health", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "store(s) down: ledger, influxdb, redis" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    for line in result.stdout.strip().splitlines():
        assert "DOWN" in line  # one line per store, each with its cause


def test_health_with_nothing_configured_reports_embedded_defaults(tmp_path: Path) -> None:
    result = run_cli("health", "--json", env={"MARKETKEEPER_HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_store = {s["store"]: s for s in report["stores"]}
    assert by_store["ledger"]["ok"] and by_store["ledger"]["version"].startswith("sqlite")
    assert not by_store["influxdb"]["configured"]
    assert not by_store["redis"]["configured"]


def test_ingest_then_read_back_through_the_cli(pg_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": pg_url, "MARKETKEEPER_HOME": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    series = ["-e", "binance", "-s", "SOL/USDT", "-t", "1m", "--start", "2024-05-06T00:00", "--end", "2024-05-06T01:00"]

    first = run_cli("ingest", *series, "--source", "synthetic:5", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "60 fetched, 60 written, 0 quarantined, 0 skipped" in first.stdout
    again = run_cli("ingest", *series, "--source", "synthetic:5", env=env, cwd=tmp_path)
    assert "60 fetched, 60 written, 0 quarantined, 0 skipped" in again.stdout

    as_json = run_cli("candles", *series, "--format", "json", env=env, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert len(rows) == 60
    assert rows[0]["open_time"] == "2024-05-06T00:00:00+00:00"
    assert all(r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"] for r in rows)
    as_csv = run_cli("candles", *series, "--format", "csv", env=env, cwd=tmp_path)
    assert as_csv.stdout.splitlines()[0].startswith("open_time,open,high,low,close,volume")
    assert len(as_csv.stdout.splitlines()) == 61


def test_ingest_refuses_a_start_after_the_end_and_an_unknown_source(tmp_path: Path) -> None:
    env = {"MARKETKEEPER_HOME": str(tmp_path)}
    series = ["-e", "binance", "-s", "BTC/USDT", "--source", "synthetic"]
    backwards = run_cli("ingest", *series, "--start", "2024-05-02", "--end", "2024-05-01", env=env, cwd=tmp_path)
    assert backwards.returncode == 1 and "must be before --end" in backwards.stderr
    days = ["--start", "2024-05-01", "--end", "2024-05-02"]
    unknown = run_cli("ingest", "-e", "binance", "-s", "BTC/USDT", "--source", "ftp:x", *days, env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown source 'ftp:x'" in unknown.stderr
    assert "Traceback" not in backwards.stderr + unknown.stderr


def test_ingest_without_source_uses_the_declared_market_and_its_first_date(tmp_path: Path) -> None:
    declared = {
        "markets": [{"exchange": "binance", "symbol": "DEC/USDT", "first_date": "2024-05-06", "source": "synthetic:5"}]
    }
    env = {"MARKETKEEPER_HOME": str(tmp_path / "home"), "MARKETKEEPER_MARKETS": json.dumps(declared)}
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    series = ["-e", "binance", "-s", "DEC/USDT", "--start", "2024-05-05T23:00", "--end", "2024-05-06T01:00"]
    result = run_cli("ingest", *series, "--wait", "0", env=env, cwd=tmp_path)  # no --source: the declared one
    assert result.returncode == 0, result.stderr
    assert "[2024-05-06T00:00:00+00:00, 2024-05-06T01:00:00+00:00): 60 fetched, 60 written" in result.stdout
    declared_rows = json.loads(run_cli("candles", *series, "--format", "json", env=env, cwd=tmp_path).stdout)

    other = {"MARKETKEEPER_HOME": str(tmp_path / "other")}
    assert run_cli("db", "upgrade", env=other, cwd=tmp_path).returncode == 0
    explicit = run_cli("ingest", *series, "--source", "synthetic:5", env=other, cwd=tmp_path)
    assert explicit.returncode == 0, explicit.stderr
    assert json.loads(run_cli("candles", *series, "--format", "json", env=other, cwd=tmp_path).stdout)[60:] == (
        declared_rows
    )


def test_candles_csv_reads_back_the_stored_doubles_and_json_prints_what_json_dumps_did(
    pg_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    import numpy as np
    import pandas as pd

    from marketkeeper.candles import SeriesKey
    from marketkeeper.ledger import create_ledger_engine, migrate
    from marketkeeper.stores import SQLCandleStore

    migrate.upgrade(pg_url)
    key = SeriesKey.of("streamcli", "A/B", "1m")
    floats = [1.2345678901234567e-10, 1e-19, 5e-324, 7.0, 0.1 + 0.2, 2.0**53 + 2, 1.7976931348623157e308, -2.5e-300]
    n = 250_003  # more than two frames of the streamed read
    frame = pd.DataFrame(
        {
            "open_time": pd.date_range(datetime(2024, 1, 1, tzinfo=UTC), periods=n, freq="1min"),
            **{
                name: [floats[(i + j) % len(floats)] for i in range(n)]
                for j, name in enumerate(("open", "high", "low", "close", "volume"))
            },
            "quote_volume": [None if i % 3 == 0 else 1 / (i + 1) for i in range(n)],
            "trade_count": pd.array([None if i % 4 == 1 else i for i in range(n)], dtype="Int64"),
        }
    )
    frame.loc[5, "open_time"] += pd.Timedelta(microseconds=7)  # an open time with a fraction
    store = SQLCandleStore(create_ledger_engine(pg_url), owns_engine=True)
    try:
        store.write(key, frame)
        stored = store.read(key, datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
        series = ["-e", "streamcli", "-s", "A/B", "--start", "2024-01-01", "--end", "2025-01-01"]
        env = {"DATABASE_URL": pg_url, "MARKETKEEPER_HOME": str(tmp_path)}

        as_csv = run_cli("candles", *series, "--format", "csv", env=env, cwd=tmp_path)
        as_json = run_cli("candles", *series, "--format", "json", env=env, cwd=tmp_path)
    finally:
        store.delete_range(key, datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
        store.close()

    # The CSV is PostgreSQL's text ("7", not "7.0"): same header, open times and NULLs, every value the double
    # stored, bit for bit.
    shown = stored.assign(open_time=stored["open_time"].map(lambda t: t.isoformat()))
    assert as_csv.returncode == 0, as_csv.stderr
    header, *lines = as_csv.stdout.split("\n")[:-1]
    assert header == ",".join(stored.columns)
    fields = list(zip(*(line.split(",") for line in lines), strict=True))
    assert len(lines) == n and list(fields[0]) == shown["open_time"].tolist()
    for name, texts in zip(stored.columns[1:7], fields[1:7], strict=True):
        parsed = np.array([np.nan if t == "" else float(t) for t in texts])
        assert parsed.view(np.int64).tolist() == stored[name].to_numpy().view(np.int64).tolist(), name
    assert [None if t == "" else int(t) for t in fields[7]] == stored["trade_count"].astype(object).where(
        stored["trade_count"].notna(), None
    ).tolist()
    records = shown.astype(object).where(shown.notna(), None).to_dict(orient="records")
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout == json.dumps(records) + "\n"
