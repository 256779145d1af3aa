"""Commands that need neither Airflow nor Great Expectations never import them (nor ccxt): each runs in a fresh
interpreter, through the CLI entry point, and the modules it loaded are checked afterwards.

Start-up time is a benchmark (``bench/startup.py``), not a test; what is pinned here is the cause of slow
start-ups, which does not depend on the machine's load. The commands point at an empty SQLite ledger and an
InfluxDB/Redis that is not there: they may fail (exit 1, one line), but they must not import what they do not use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("airflow", "great_expectations", "ccxt")

_CHILD = """
import json, sys
from typer.testing import CliRunner
from marketkeeper.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
names = set(sys.modules) | {name.split(".")[0] for name in sys.modules}  # a package, or one of its modules
loaded = sorted(names & set(json.loads(sys.stdin.read())))
print(json.dumps({"exit_code": result.exit_code, "output": result.output, "loaded": loaded}))
"""

DAY = ["--start", "2024-01-01", "--end", "2024-01-02"]
SERIES = ["-e", "binance", "-s", "BTC/USDT"]
COMMANDS = [
    ["--help"],
    ["candles", "--help"],
    ["ingest", "--help"],
    ["backfill", "--help"],
    ["gaps", "--help"],
    ["db", "current"],
    ["health"],
    ["gaps"],
    ["candles", *SERIES, *DAY],
    ["gaps", "detect", *SERIES, *DAY, "--dry-run"],
    ["status"],
    ["status", "--json"],
    ["downsample", "--help"],
    ["backup", "--help"],
    ["backup", "list"],
    ["serve", "--help"],
    ["retention", "--dry-run"],
    ["maintenance", "--dry-run"],
]


def _run(args: list[str], env: dict[str, str], forbidden: tuple[str, ...] = FORBIDDEN) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        input=json.dumps(forbidden),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "INFLUXDB_", "REDIS_URL"))}
    return {
        **clean,
        "MARKETKEEPER_HOME": str(home),
        "DATABASE_URL": f"sqlite:///{Path(home, 'ledger.db')}",
        "GX_ANALYTICS_ENABLED": "False",
    }


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_command_does_not_import_airflow_gx_or_ccxt(args: list[str], env: dict[str, str]) -> None:
    result = _run(args, env)
    assert result["loaded"] == [], f"`marketkeeper {' '.join(args)}` imported {result['loaded']}"


def test_candles_on_influxdb_does_not_import_them(env: dict[str, str]) -> None:
    # A down InfluxDB and Redis: the command fails with one line, having loaded only the stores' own clients
    # (not even the ledger's SQLAlchemy and driver: a candle read from InfluxDB never opens the ledger).
    influx_env = {**env, "INFLUXDB_URL": "http://127.0.0.1:9", "REDIS_URL": "redis://127.0.0.1:9/0"}
    result = _run(["candles", *SERIES, *DAY], influx_env, forbidden=(*FORBIDDEN, "sqlalchemy", "psycopg"))
    assert result["exit_code"] == 1, result["output"]
    assert result["loaded"] == []


def test_candles_from_postgresql_does_not_load_the_orm(env: dict[str, str]) -> None:
    # A PostgreSQL read streams a COPY: the ORM's mapping of every ledger model is never loaded. (The server
    # is down here, so the command stops at connecting; the COPY path itself names no table object.)
    pg_env = {**env, "DATABASE_URL": "postgresql://mk@127.0.0.1:9/mk"}
    orm = ("sqlalchemy.orm", "marketkeeper.ledger.models.trading")
    result = _run(["candles", *SERIES, *DAY], pg_env, forbidden=orm)
    assert result["exit_code"] == 1, result["output"]
    assert result["loaded"] == []


@pytest.mark.parametrize(
    "stores",
    [{"INFLUXDB_URL": "http://127.0.0.1:9"}, {"DATABASE_URL": "postgresql://mk@127.0.0.1:9/mk"}],
    ids=["influxdb", "postgresql"],
)
def test_candles_as_csv_does_not_import_numpy_or_pandas(env: dict[str, str], stores: dict[str, str]) -> None:
    # A CSV export streams the store's own text (PostgreSQL's COPY, InfluxDB's answer rewritten as bytes):
    # numpy and pandas, a third of a start-up, are never imported. The server is down here: the command has
    # imported its whole export path and fails with one line.
    result = _run(["candles", *SERIES, *DAY, "--format", "csv"], {**env, **stores}, forbidden=("numpy", "pandas"))
    assert result["exit_code"] == 1, result["output"]
    assert result["loaded"] == []


def test_the_guard_trips(env: dict[str, str]) -> None:
    """The same child reports a module the command does import: the check above can fail."""
    result = _run(["--help"], env, forbidden=("typer", *FORBIDDEN))
    assert result["loaded"] == ["typer"]
