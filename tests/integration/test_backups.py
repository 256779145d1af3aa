"""Backups and restore drills against the real PostgreSQL, InfluxDB and Redis, with real tools (pg_dump,
influxd, redis-cli, redis-server) and a temporary backup folder: never a user's backups or databases.

The ledger is a fresh PostgreSQL database of the test's own, InfluxDB a database of the test's own, Redis DB 15
under the ``mktest:`` prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.backups.destination import Destination
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.redis_client import RedisClient
from marketkeeper.repositories import unit_of_work
from marketkeeper.services import backups
from marketkeeper.services.demo import seed_demo
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL, REDIS_TEST_URL

pytestmark = pytest.mark.integration

PREFIX = "mktest:"
SERIES = "binance:BTC/USDT:1m"


@pytest.fixture
def ledger(fresh_pg_url: str) -> str:
    """A migrated ledger of the test's own with a seeded paper bot (trades, balances, performance rows)."""
    migrate.upgrade(fresh_pg_url)
    seed_demo(StoreConfig(ledger_url=fresh_pg_url), trades=40, seed=3)
    return fresh_pg_url


@pytest.fixture
def influx_db() -> Iterator[str]:
    """An InfluxDB database of the test's own holding two days of 1m candles of two series."""
    name = f"{INFLUXDB_TEST_DB}_bk"
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=name)
    client.drop_database()
    client.create_database()
    start = datetime(2024, 3, 1, tzinfo=UTC)
    lines = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        for minute in range(0, 2 * 24 * 60, 7):
            at = start + timedelta(minutes=minute)
            close = 100.0 + minute / 7
            lines.append(
                f"candles,exchange=binance,symbol={symbol},timeframe=1m open={close},high={close + 1},"
                f"low={close - 1},close={close},volume={minute * 0.25} {int(at.timestamp()) * 10**9}"
            )
    client.write_lines(lines)
    yield name
    for db in next(s.values for s in client.query("SHOW DATABASES", epoch=None)):
        if db[0].startswith(name):
            InfluxDBClient(INFLUXDB_TEST_URL, database=db[0]).drop_database()
    client.close()


@pytest.fixture
def redis_keys(redis_prefix: str) -> RedisClient:
    """Watermarks, latest candles and an expiring lock under ``mktest:`` in DB 15."""
    client = RedisClient(REDIS_TEST_URL, prefix=PREFIX)
    client.raw.set(client.key("candle", "watermark", SERIES), "1709337600000")
    client.raw.set(client.key("candle", "watermark", "binance:ETH/USDT:1m"), "1709337660000")
    client.raw.hset(client.key("candle", "latest", SERIES), mapping={"close": "101.5", "open_time_ms": "1"})
    client.raw.set(client.key("lock", SERIES), "token", ex=600)
    return client


@pytest.fixture
def config(ledger: str, influx_db: str, redis_keys: RedisClient) -> StoreConfig:
    return StoreConfig(
        ledger_url=ledger,
        influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=influx_db),
        redis=lambda: RedisClient(REDIS_TEST_URL, prefix=PREFIX),
    )


@pytest.fixture
def destination(tmp_path: Path) -> Destination:
    return Destination((tmp_path / "backups").as_uri())


def _files(destination: Destination) -> list[str]:
    root = Path(destination.root.path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _row(config: StoreConfig, backup_id: int) -> backups.BackupOutcome:
    return next(b for b in backups.list_backups(config) if b.id == backup_id)


def test_full_backup_and_drill_of_every_store_comes_back_equal(config: StoreConfig, destination: Destination) -> None:
    outcomes = backups.run_backups(config, destination=destination)

    assert [o.store for o in outcomes if isinstance(o, backups.BackupOutcome)] == ["ledger", "influxdb", "redis"], (
        outcomes
    )
    for outcome in outcomes:
        assert isinstance(outcome, backups.BackupOutcome)
        assert outcome.status == "succeeded" and outcome.size and len(outcome.sha256 or "") == 64
        assert Path(destination.path(outcome.location).path).stat().st_size == outcome.size
    assert not [f for f in _files(destination) if ".partial-" in f]
    engine = create_ledger_engine(config.ledger_url)
    with unit_of_work(engine) as repos:
        figures = {run.store: run.figures for run in repos.backups.complete()}
    engine.dispose()
    assert figures["ledger"]["tables"]["public.trades"]["rows"] == 40
    assert sum(v[0] for v in figures["influxdb"]["series"][SERIES].values()) == len(range(0, 2 * 24 * 60, 7))
    assert figures["redis"]["namespaces"] == {"candle:watermark": 2, "candle:latest": 1}  # the lock has a TTL
    assert figures["redis"]["watermarks"][SERIES] == "1709337600000"

    drills = backups.drill_stores(config, destination=destination)

    assert all(isinstance(d, backups.DrillOutcome) and d.passed for d in drills), "; ".join(map(str, drills))
    for drill in drills:
        assert isinstance(drill, backups.DrillOutcome)
        row = _row(config, drill.backup_id)
        assert row.status == "verified" and row.rto_seconds is not None and row.rpo_seconds is not None
    overview = _overview(config)
    assert set(overview) == {"ledger", "influxdb", "redis"}
    assert all(o.last_drill_status == "verified" for o in overview.values())
    # The scratch targets are gone: no drill database on PostgreSQL or InfluxDB.
    admin = create_ledger_engine(config.ledger_url)
    with admin.connect() as conn:
        left = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE '%drill%'")).all()
    admin.dispose()
    assert left == []
    assert config.influxdb is not None
    with config.influxdb() as client:
        names = [row[0] for s in client.query("SHOW DATABASES", epoch=None) for row in s.values]
    assert not [n for n in names if "_drill_" in n]


def _overview(config: StoreConfig) -> dict[str, object]:
    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            return dict(repos.backups.newest_per_store())
    finally:
        engine.dispose()
