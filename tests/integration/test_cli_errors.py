"""What a user sees when something is wrong (issue 8): one line on stderr naming the cause, a non-zero exit, no
traceback, and nothing half-written; and names with braces that round-trip through every command and store.

Each case runs ``python -m marketkeeper`` in a subprocess, as a user runs it, against the real servers.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.influxdb import InfluxDBClient
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

UNREACHABLE_DB = "postgresql://postgres:pw@127.0.0.1:1/nowhere"
# A line of Python logging (a library's warning), not the command's own output.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) ")


def assert_clear_error(result: subprocess.CompletedProcess[str], *causes: str, code: int = 1) -> str:
    """``result`` failed with ``code`` and one ``error:`` line on stderr naming every one of ``causes``."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for cause in causes:
        assert cause in lines[0], lines[0]
    return lines[0]


def assert_usage_error(result: subprocess.CompletedProcess[str], value: str) -> None:
    """typer's own usage error: exit 2, the refused value named, no traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    assert value in result.stderr and "Invalid value" in result.stderr, result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _ledger_tables(home: Path) -> set[str]:
    ledger = home / "ledger.sqlite"
    if not ledger.exists():
        return set()
    engine = sa.create_engine(f"sqlite:///{ledger}")
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _count(home: Path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{home / 'ledger.sqlite'}")
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(sa.table(table)))
    finally:
        engine.dispose()


# --- bad, unparseable, unreachable and unsupported ledger URLs ---------------------------------------------


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("postgresql://nohost.invalid/x", "nohost.invalid"),
        ("not a url", "not a valid URL"),
        (UNREACHABLE_DB, "port 1"),
    ],
    ids=["unknown-host", "not-a-url", "port-1"],
)
def test_db_current_with_a_bad_or_unreachable_database_url(url: str, cause: str, home: Path, tmp_path: Path) -> None:
    result = run_cli("db", "current", env={"DATABASE_URL": url, "MARKETKEEPER_HOME": str(home)}, cwd=tmp_path)
    line = assert_clear_error(result, cause)
    assert "pw@" not in line
    assert not (home / "ledger.sqlite").exists()  # never a fallback onto the embedded ledger


@pytest.mark.parametrize(
    "args",
    [
        ["gaps"],
        ["gaps", "detect", "-e", "binance", "-s", "BTC/USDT", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["rollup", "--bot", "x", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["ingest", "-e", "x", "-s", "A/B", "--start", "2024-01-01", "--end", "2024-01-02", "--source", "synthetic"],
        ["backfill", "-e", "x", "-s", "A/B", "--start", "2024-01-01", "--end", "2024-01-02", "--source", "synthetic"],
        ["candles", "-e", "x", "-s", "A/B", "--start", "2024-01-01", "--end", "2024-01-02"],
    ],
    ids=["gaps", "gaps-detect", "rollup", "ingest", "backfill", "candles"],
)
def test_commands_with_an_unreachable_database(args: list[str], home: Path, tmp_path: Path) -> None:
    result = run_cli(*args, env={"DATABASE_URL": UNREACHABLE_DB, "MARKETKEEPER_HOME": str(home)}, cwd=tmp_path)
    line = assert_clear_error(result, "127.0.0.1", "port 1")
    assert "pw@" not in line and ":pw" not in line
    assert not (home / "ledger.sqlite").exists()


def test_db_upgrade_refuses_mysql_without_printing_its_password(home: Path, tmp_path: Path) -> None:
    env = {"DATABASE_URL": "mysql://u:p@127.0.0.1/x", "MARKETKEEPER_HOME": str(home)}
    result = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    line = assert_clear_error(result, "mysql")
    assert "p@" not in result.stdout + result.stderr and "u:p" not in line
    assert not home.exists() or not any(home.iterdir())


# --- hostile input: a stray file name, a time outside what stores hold, unknown choices -----------------------


def test_a_stray_file_in_a_files_source_is_named_and_nothing_is_written(home: Path, tmp_path: Path) -> None:
    env = {"MARKETKEEPER_HOME": str(home)}
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    files = tmp_path / "files"
    files.mkdir()
    stamp = 1704067200000  # 2024-01-01T00:00Z
    (files / "BTCUSDT-1m-2024-01-01.csv").write_text(
        "".join(f"{stamp + i * 60000},1.5,2.5,1.0,2.0,3.0,{stamp + i * 60000 + 59999},4.5,5,1,1,0\n" for i in range(60))
    )
    (files / "BTCUSDT-1m-2024-13.csv").write_text("")
    series = ["-e", "binance", "-s", "BTC/USDT", "--start", "2024-01-01T00:00", "--end", "2024-01-01T01:00"]
    result = run_cli("ingest", *series, "--source", f"files:{files}", env=env, cwd=tmp_path)
    assert_clear_error(result, "BTCUSDT-1m-2024-13.csv")
    assert _count(home, "candles") == 0
    assert _count(home, "quarantined_candles") == 0
    assert json.loads(run_cli("candles", *series, "--format", "json", env=env, cwd=tmp_path).stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "-e", "x", "-s", "A/B", "--source", "synthetic:1"],
        ["backfill", "-e", "x", "-s", "A/B", "--source", "synthetic:1", "--force"],
        ["gaps", "detect", "-e", "x", "-s", "A/B"],
        ["candles", "-e", "x", "-s", "A/B"],
    ],
    ids=["ingest", "backfill", "gaps-detect", "candles"],
)
def test_a_start_in_1500_is_refused_naming_the_supported_span(args: list[str], home: Path, tmp_path: Path) -> None:
    env = {"MARKETKEEPER_HOME": str(home)}
    result = run_cli(*args, "--start", "1500-01-01", "--end", "2024-01-02", env=env, cwd=tmp_path)
    assert_clear_error(result, "1500-01-01", "supported span")
    for table in {"candles", "candle_gaps", "data_quality_runs"} & _ledger_tables(home):
        assert _count(home, table) == 0


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["candles", "-e", "x", "-s", "A/B", "--start", "2024-01-01", "--end", "2024-01-02", "--format", "xml"], "xml"),
        (["gaps", "--format", "yaml"], "yaml"),
        (["gaps", "detect", "--format", "yaml"], "yaml"),
        (["gaps", "--status", "closed"], "closed"),
        (
            ["backfill", "-e", "x", "-s", "A/B", "--start", "2024-01-01", "--end", "2024-01-02", "--via", "pigeon"],
            "pigeon",
        ),
    ],
    ids=["candles-format", "gaps-format", "detect-format", "gaps-status", "backfill-via"],
)
def test_an_unknown_choice_is_a_usage_error(args: list[str], value: str, home: Path, tmp_path: Path) -> None:
    assert_usage_error(run_cli(*args, env={"MARKETKEEPER_HOME": str(home)}, cwd=tmp_path), value)
    assert not (home / "ledger.sqlite").exists()


# --- names with braces (and brackets) through both stores and every command ----------------------------------

EXCHANGE = "ex{{y}"
SYMBOL = "A{x}[b]/USDT"
LABEL = f"{EXCHANGE}:{SYMBOL}:1m"


@pytest.fixture(params=["sql", "influxdb"])
def store_env(request: pytest.FixtureRequest, home: Path) -> Iterator[dict[str, str]]:
    env = {"MARKETKEEPER_HOME": str(home)}
    if request.param == "sql":
        yield env
        return
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    client.drop_database()
    yield {**env, "INFLUXDB_URL": INFLUXDB_TEST_URL, "INFLUXDB_BUCKET": INFLUXDB_TEST_DB}
    client.drop_database()
    client.close()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    return result.stdout


def test_a_name_with_braces_round_trips_through_every_command(store_env: dict[str, str], tmp_path: Path) -> None:
    env = store_env
    series = ["-e", EXCHANGE, "-s", SYMBOL, "-t", "1m"]
    first_hour = ["--start", "2024-03-04T00:00Z", "--end", "2024-03-04T01:00Z"]
    two_hours = ["--start", "2024-03-04T00:00Z", "--end", "2024-03-04T02:00Z"]
    _ok(run_cli("db", "upgrade", env=env, cwd=tmp_path))

    # The progress bar is drawn as on a terminal (TTY_INTERACTIVE), where rich renders the name on every refresh.
    tty = {**env, "TTY_INTERACTIVE": "1"}
    ingested = _ok(run_cli("ingest", *series, *first_hour, "--source", "synthetic:1", env=tty, cwd=tmp_path))
    assert f"{LABEL} [2024-03-04T00:00:00+00:00, 2024-03-04T01:00:00+00:00): 60 fetched, 60 written" in ingested

    rows = json.loads(_ok(run_cli("candles", *series, *first_hour, "--format", "json", env=env, cwd=tmp_path)))
    assert len(rows) == 60 and rows[0]["open_time"] == "2024-03-04T00:00:00+00:00"

    detected = json.loads(
        _ok(run_cli("gaps", "detect", *series, *two_hours, "--format", "json", env=env, cwd=tmp_path))
    )
    assert [(d["series"], d["missing"]) for d in detected] == [(LABEL, 60)]
    listed = json.loads(_ok(run_cli("gaps", "--format", "json", env=env, cwd=tmp_path)))
    assert [(g["exchange"], g["symbol"], g["status"]) for g in listed] == [(EXCHANGE, SYMBOL, "open")]
    by_name = json.loads(_ok(run_cli("gaps", "-e", EXCHANGE, "-s", SYMBOL, "--format", "json", env=env, cwd=tmp_path)))
    assert len(by_name) == 1

    filled = _ok(run_cli("backfill", *series, *two_hours, "--source", "synthetic:1", env=tty, cwd=tmp_path))
    assert (
        f"{LABEL} [2024-03-04T00:00:00+00:00, 2024-03-04T02:00:00+00:00) gaps only" in filled
        and "1 filled" in filled
        and "0 candle(s) still missing" in filled
    )
    rows = json.loads(_ok(run_cli("candles", *series, *two_hours, "--format", "json", env=env, cwd=tmp_path)))
    assert len(rows) == 120

    if "INFLUXDB_URL" in env:  # the tags as InfluxDB holds them: exactly the names given
        client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
        try:
            series_found = client.query('SHOW TAG VALUES FROM "candles" WITH KEY IN ("exchange", "symbol")')
        finally:
            client.close()
        tags = {(key, value) for s in series_found for key, value in s.values}
        assert tags == {("exchange", EXCHANGE), ("symbol", SYMBOL)}


def test_a_ledger_never_migrated_says_how_to_migrate_it(home: Path, tmp_path: Path) -> None:
    result = run_cli("gaps", env={"MARKETKEEPER_HOME": str(home)}, cwd=tmp_path)
    assert_clear_error(result, "marketkeeper db upgrade")
