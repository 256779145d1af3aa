"""No password in any output, log or ledger row (issue 8), through every command and one DAG run.

Sentinel passwords travel in ``DATABASE_URL`` (PostgreSQL here trusts local connections, so any password
works), ``INFLUXDB_URL`` (InfluxDB here has no auth) and ``REDIS_URL`` (Redis here has no password: redis-py's
AUTH is accepted, checked by the ping in :func:`redis_url`). Every command runs with them, also against an
unreachable InfluxDB and a missing InfluxDB database so that errors are printed, and a write the server refuses
records its error on a gap. Then all stdout/stderr, every text of every ledger table and, for the DAG run, the
task logs are searched for the sentinels.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import migrate
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL, PG_TEST_DB, _drop_pg_database, _recreate_pg_database
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

PG_SECRET = "S3ntinelPg"
INFLUX_SECRET = "S3ntinel-Pa55"
REDIS_SECRET = "S3ntinelRd"
SENTINELS = (PG_SECRET, INFLUX_SECRET, REDIS_SECRET)
INFLUX_DB = f"{INFLUXDB_TEST_DB}_secrets"
EXCHANGE = "secretstest"
SYMBOL = "SECRT/USDT"


def _with_password(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


@pytest.fixture
def admin_ledger_url() -> Iterator[str]:
    """A database of this test's own, reached with the admin URL (the sentinel URL reaches the same one)."""
    name = f"{PG_TEST_DB}_secrets"
    yield _recreate_pg_database(name)
    _drop_pg_database(name)


@pytest.fixture
def ledger_url(admin_ledger_url: str) -> str:
    return make_url(admin_ledger_url).set(drivername="postgresql", password=PG_SECRET).render_as_string(False)


@pytest.fixture
def influxdb() -> Iterator[InfluxDBClient]:
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUX_DB)
    client.drop_database()
    yield client
    client.drop_database()
    client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = f"redis://:{REDIS_SECRET}@127.0.0.1:6379/15"
    client = redis.Redis.from_url(url)
    assert client.ping()  # redis-py's AUTH with a password is accepted by this passwordless server
    yield url
    keys = [k for k in client.scan_iter(count=1000) if EXCHANGE.encode() in k]
    if keys:
        client.delete(*keys)
    client.close()


class Outputs:
    """Every command's output, kept to be searched for the sentinels at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runs: list[tuple[list[str], subprocess.CompletedProcess[str]]] = []

    def run(self, env: dict[str, str], *args: str, ok: bool | None = None) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, env=env, cwd=self.cwd)
        self.runs.append((list(args), result))
        if ok is not None:
            assert (result.returncode == 0) is ok, f"{args}: {result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr, f"{args}: {result.stderr}"
        return result

    def leaks(self) -> list[str]:
        return [
            f"{' '.join(args)} printed {secret!r}: {(result.stdout + result.stderr)[-2000:]}"
            for args, result in self.runs
            for secret in SENTINELS
            if secret in result.stdout + result.stderr
        ]


def _ledger_leaks(admin_url: str) -> tuple[list[str], dict[str, int]]:
    """Every row of every ledger table holding a sentinel, and the row count of each table."""
    engine = sa.create_engine(admin_url)
    leaks, counts = [], {}
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows = conn.execute(sa.select(table)).all()
                counts[table.name] = len(rows)
                leaks.extend(
                    f"{table.name}: {row}" for row in rows for secret in SENTINELS if secret in repr(tuple(row))
                )
    finally:
        engine.dispose()
    return leaks, counts


def _kline_file(directory: Path, day: datetime, *, bad_row: int) -> None:
    """A Binance 1m kline file of one day's first hour, one row of which fails the gate (high below low)."""
    stamp = int(day.timestamp()) * 1000
    lines = []
    for i in range(60):
        opened = stamp + i * 60_000
        high, low = (1.0, 2.0) if i == bad_row else (3.0, 1.0)
        lines.append(f"{opened},2.0,{high},{low},2.5,1.5,{opened + 59_999},3.0,7,0.5,1.0,0")
    (directory / f"SECRTUSDT-1m-{day:%Y-%m-%d}.csv").write_text("\n".join(lines) + "\n")


def test_no_command_prints_or_stores_a_password(
    admin_ledger_url: str, ledger_url: str, influxdb: InfluxDBClient, redis_url: str, tmp_path: Path
) -> None:
    influx_url = _with_password(INFLUXDB_TEST_URL, "mkuser", INFLUX_SECRET)
    env = {
        "DATABASE_URL": ledger_url,
        "INFLUXDB_URL": influx_url,
        "INFLUXDB_BUCKET": INFLUX_DB,
        "REDIS_URL": redis_url,
        "MARKETKEEPER_HOME": str(tmp_path / "home"),
    }
    out = Outputs(tmp_path)
    series = ["-e", EXCHANGE, "-s", SYMBOL, "-t", "1m"]
    files = tmp_path / "files"
    files.mkdir()
    _kline_file(files, datetime(2024, 1, 1, tzinfo=UTC), bad_row=5)
    jan = ["--start", "2024-01-01T00:00Z", "--end", "2024-01-01T01:00Z"]
    feb = ["--start", "2024-02-01T00:00Z", "--end", "2024-02-01T01:00Z"]

    # Everything up: setup, health, an ingest with a quarantined row, a gap detected, listed and backfilled.
    out.run(env, "db", "upgrade", ok=True)
    out.run(env, "db", "current", ok=True)
    out.run(env, "health", ok=True)
    out.run(env, "health", "--json", ok=True)
    first = out.run(env, "ingest", *series, *jan, "--source", f"files:{files}", "--max-failed-fraction", "0.5", ok=True)
    assert "1 quarantined" in first.stdout
    out.run(env, "candles", *series, *jan, ok=True)
    out.run(env, "candles", *series, *jan, "--format", "json", ok=True)
    out.run(env, "gaps", "detect", *series, "--start", "2024-01-01T00:00Z", "--end", "2024-01-01T02:00Z", ok=True)
    out.run(env, "gaps", ok=True)
    out.run(env, "gaps", "--format", "json", ok=True)
    window = ["--start", "2024-01-01T00:00Z", "--end", "2024-01-01T02:00Z"]
    out.run(env, "backfill", *series, *window, "--source", "synthetic:1", ok=True)
    out.run(env, "backfill", *series, *window, "--source", "synthetic:1", "--force", "--wait", "5", ok=True)

    # A write InfluxDB refuses (a field stored as a string in February's shard): the error lands on the gap.
    conflict_at = int(datetime(2024, 2, 1, 0, 30, tzinfo=UTC).timestamp())
    influxdb.write_lines([f'candles,exchange=seed,symbol=X,timeframe=1m open="x" {conflict_at}'], precision="s")
    out.run(env, "gaps", "detect", *series, *feb, ok=True)
    out.run(env, "backfill", *series, *feb, "--source", "synthetic:1", ok=False)
    out.run(env, "ingest", *series, *feb, "--source", "synthetic:1", ok=False)
    failed = json.loads(out.run(env, "gaps", "--status", "failed", "--format", "json", ok=True).stdout)
    assert failed and failed[0]["last_error"], "the refused write should be recorded on the gap"

    # InfluxDB unreachable (a wrong port): every command that needs it prints its error.
    down = {**env, "INFLUXDB_URL": _with_password("http://127.0.0.1:1", "mkuser", INFLUX_SECRET)}
    out.run(down, "health", ok=False)
    out.run(down, "health", "--json", ok=False)
    out.run(down, "ingest", *series, *jan, "--source", "synthetic:1", ok=False)
    out.run(down, "candles", *series, *jan, ok=False)
    out.run(down, "gaps", "detect", *series, *jan, ok=False)
    out.run(down, "backfill", *series, *jan, "--source", "synthetic:1", ok=False)
    out.run(down, "db", "upgrade", ok=False)

    # A missing InfluxDB database: a clear error, no database created behind the user's back.
    missing = {**env, "INFLUXDB_BUCKET": f"{INFLUX_DB}_missing"}
    out.run(missing, "ingest", *series, *jan, "--source", "synthetic:1", ok=False)
    out.run(missing, "candles", *series, *jan, ok=False)
    out.run(missing, "backfill", *series, *jan, "--source", "synthetic:1", "--force", ok=False)
    with InfluxDBClient(INFLUXDB_TEST_URL, database=f"{INFLUX_DB}_missing") as never_created:
        assert not never_created.database_exists()

    # The ledger and Redis unreachable: their errors name them, not their passwords.
    ledger_down = {**env, "DATABASE_URL": make_url(ledger_url).set(port=1).render_as_string(False)}
    redis_down = {**env, "REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:1/15"}
    for broken in (ledger_down, redis_down):
        out.run(broken, "health", ok=False)
        out.run(broken, "health", "--json", ok=False)
        out.run(broken, "ingest", *series, *jan, "--source", "synthetic:1")
    out.run(ledger_down, "db", "current", ok=False)
    out.run(ledger_down, "db", "upgrade", ok=False)
    out.run(ledger_down, "gaps", ok=False)
    out.run({**env, "DATABASE_URL": f"mysql://u:{PG_SECRET}@127.0.0.1/x"}, "db", "upgrade", ok=False)

    assert out.leaks() == []

    leaks, counts = _ledger_leaks(admin_ledger_url)
    # The searched tables did receive rows, so the search below can find a leak.
    assert counts["candle_gaps"] >= 2 and counts["quarantined_candles"] >= 1 and counts["data_quality_runs"] >= 1
    assert leaks == []


@pytest.mark.airflow
def test_an_ohlcv_ingest_run_logs_no_password(
    airflow_home: Path, admin_ledger_url: str, ledger_url: str, influxdb: InfluxDBClient, redis_prefix: str
) -> None:
    migrate.upgrade(admin_ledger_url)
    influxdb.create_database()
    markets = {"markets": [{"exchange": EXCHANGE, "symbol": SYMBOL, "source": "synthetic:1"}]}
    # The ledger and InfluxDB connections are derived by scripts/airflow.sh from the URLs; Redis is given as
    # the Connection JSON a deployment would hold.
    env = {
        "DATABASE_URL": ledger_url,
        "INFLUXDB_URL": _with_password(INFLUXDB_TEST_URL, "mkuser", INFLUX_SECRET),
        "INFLUXDB_BUCKET": INFLUX_DB,
        "AIRFLOW_CONN_MARKETKEEPER_REDIS_DEFAULT": json.dumps(
            {
                "conn_type": "marketkeeper_redis",
                "host": "127.0.0.1",
                "port": 6379,
                "password": REDIS_SECRET,
                "extra": {"db": 15, "prefix": redis_prefix},
            }
        ),
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": json.dumps(markets),
    }
    conf = json.dumps({"start": "2024-05-06T00:00:00+00:00", "end": "2024-05-06T01:00:00+00:00"})
    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", conf, check=False)
    output = result.stdout + result.stderr
    assert "state=success" in output, output[-5000:]

    # `airflow dags test` runs the tasks in-process and prints their logs; whatever lands in logs/ is read too.
    assert f"{EXCHANGE}:{SYMBOL} 1m [2024-05-06T00:00:00+00:00" in output, "the task's own log lines are searched"
    logs = sorted(p for p in (airflow_home / "airflow" / "logs").rglob("*") if p.is_file())
    texts = {"airflow dags test output": output} | {str(p): p.read_text(errors="replace") for p in logs}
    leaks = [f"{where}: {secret!r}" for where, text in texts.items() for secret in SENTINELS if secret in text]
    assert leaks == []

    ledger_leaks, counts = _ledger_leaks(admin_ledger_url)
    assert counts["data_quality_runs"] >= 1
    assert ledger_leaks == []
