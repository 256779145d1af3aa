"""The ohlcv_ingest DAG run by ``airflow dags test`` against the real PostgreSQL, InfluxDB and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import DataQualityRun, Market, create_ledger_engine, migrate
from marketkeeper.redis_client import RedisClient
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

MARKETS = {
    "markets": [
        {"exchange": "binance", "symbol": "BTC/USDT", "source": "synthetic:1"},
        {"exchange": "binance", "symbol": "ETH/USDT", "source": "synthetic:2"},
        {"exchange": "kraken", "symbol": "XBT/EUR", "source": "synthetic:3", "active": False},
    ]
}
START, END = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 6, 3, tzinfo=UTC)
CONF = json.dumps({"start": START.isoformat(), "end": END.isoformat()})
BTC, ETH, XBT = (SeriesKey.of(m["exchange"], m["symbol"], "1m") for m in MARKETS["markets"])


@pytest.fixture
def influxdb() -> Iterator[InfluxDBClient]:
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    client.drop_database()
    client.create_database()
    yield client
    client.drop_database()
    client.close()


@pytest.fixture
def env(pg_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    migrate.upgrade(pg_url)  # `make demo` does this with `marketkeeper db upgrade`
    redis_db = int(redis_url.rsplit("/", 1)[1])
    return {
        "DATABASE_URL": pg_url,
        "INFLUXDB_URL": INFLUXDB_TEST_URL,
        "INFLUXDB_BUCKET": INFLUXDB_TEST_DB,
        "AIRFLOW_CONN_MARKETKEEPER_REDIS_DEFAULT": json.dumps(
            {
                "conn_type": "marketkeeper_redis",
                "host": "127.0.0.1",
                "port": 6379,
                "extra": {"db": redis_db, "prefix": redis_prefix},
            }
        ),
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": json.dumps(MARKETS),
    }


def test_a_manual_run_ingests_every_active_market_and_a_rerun_changes_nothing(
    airflow_home: Path, env: dict[str, str], pg_url: str, redis_url: str, redis_prefix: str, influxdb: InfluxDBClient
) -> None:
    first = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", CONF)
    assert "state=success" in first.stdout + first.stderr

    store = InfluxDBCandleStore(influxdb)
    before = {key: store.read(key, START, END) for key in (BTC, ETH)}
    assert {key: len(frame) for key, frame in before.items()} == {BTC: 180, ETH: 180}
    assert set(store.list_series()) == {BTC, ETH}  # the inactive market is not ingested

    cache = CandleCache(RedisClient(redis_url, prefix=redis_prefix))
    latest = cache.latest(BTC)
    assert latest is not None and latest.open_time == datetime(2024, 5, 6, 2, 59, tzinfo=UTC)
    assert cache.watermark(ETH) == END

    engine = create_ledger_engine(pg_url)
    with engine.connect() as conn:
        markets = {(m.symbol, m.active) for m in conn.execute(sa.select(Market.symbol, Market.active))}
        runs = conn.scalar(sa.select(sa.func.count()).select_from(DataQualityRun))
    assert markets == {("BTC/USDT", True), ("ETH/USDT", True), ("XBT/EUR", False)}
    assert runs == 2

    second = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", CONF)
    assert "state=success" in second.stdout + second.stderr
    for key, frame in before.items():
        assert store.read(key, START, END).equals(frame)
    engine.dispose()


def test_an_unknown_market_in_the_form_fails_the_run_naming_it(airflow_home: Path, env: dict[str, str]) -> None:
    conf = json.dumps({"markets": ["binance:DOGE/USDT"], "start": START.isoformat(), "end": END.isoformat()})
    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", conf, check=False)
    assert result.returncode != 0
    assert "unknown market(s) binance:DOGE/USDT" in result.stdout + result.stderr
