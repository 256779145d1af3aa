"""``StoreConfig`` and ``StoreSet.open``, the one place stores are chosen and opened, against the real servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import migrate
from marketkeeper.redis_client import RedisClient
from marketkeeper.settings import Settings
from marketkeeper.sources import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from tests.conftest import INFLUXDB_TEST_URL

pytestmark = pytest.mark.integration

KEY = SeriesKey.of("storesettest", "BTC/USDT", "1m")
T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ledger_url(pg_url: str) -> str:
    migrate.upgrade(pg_url)
    return pg_url


def _settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


def test_the_environment_without_influxdb_or_redis_opens_the_sql_store_on_the_ledger(ledger_url: str) -> None:
    config = StoreConfig.from_settings(_settings(database_url=ledger_url))
    assert (config.influxdb, config.redis) == (None, None)
    with StoreSet.open(config) as stores:
        assert stores.candles.name.startswith("SQL")
        assert stores.cache is None
        assert stores.ledger.dialect.name == "postgresql"
        frame = next(iter(SyntheticSource(3).fetch_batches(KEY, T0, T0 + timedelta(minutes=5)))).frame
        assert stores.candles.write(KEY, frame) == 5
        assert stores.candles.count(KEY, T0, T0 + timedelta(minutes=5)) == 5
    assert "the SQL store" in config.summary and "Redis off" in config.summary


def test_influxdb_and_redis_when_configured_and_no_password_in_any_name(
    ledger_url: str, influxdb_client: InfluxDBClient, redis_url: str, redis_prefix: str
) -> None:
    host = INFLUXDB_TEST_URL.split("://", 1)[1]
    settings = _settings(
        database_url=ledger_url.replace("postgres:postgres@", "postgres:Sent1nel-pw@"),
        influxdb_url=f"http://mk:Sent1nel-pw@{host}",
        influxdb_bucket=influxdb_client.database,
        redis_url=redis_url,
    )
    config = StoreConfig.from_settings(settings)
    with StoreSet.open(config) as stores:
        assert stores.candles.name.startswith("InfluxDB")
        assert stores.cache is not None
        stores.cache.client.ping()
        for text in (stores.description, config.summary, config.ledger_target, repr(config), stores.candles.name):
            assert "Sent1nel-pw" not in text, text


def test_whatever_was_opened_is_closed_when_a_later_store_fails(ledger_url: str) -> None:
    def broken_redis() -> RedisClient:
        raise RuntimeError("redis factory failed")

    engines: list[sa.Engine] = []
    real_open = sa.create_engine

    def spy(*args: object, **kwargs: object) -> sa.Engine:
        engine = real_open(*args, **kwargs)  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    config = StoreConfig(ledger_url=ledger_url, redis=broken_redis)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sa, "create_engine", spy)
        with pytest.raises(RuntimeError, match="redis factory failed"):
            StoreSet.open(config)
    # The ledger engine was disposed again: no connection is left checked out.
    assert engines and all(e.pool.checkedout() == 0 for e in engines)


@pytest.fixture
def no_store_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("DATABASE_URL", "INFLUXDB_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_an_unset_environment_is_the_embedded_sqlite_ledger(no_store_env: None, tmp_path: object) -> None:
    config = StoreConfig.from_settings(_settings(marketkeeper_home=str(tmp_path)))
    assert config.ledger_url.startswith("sqlite:///") and config.ledger_url.endswith("ledger.sqlite")
    assert config.absent["influxdb"].startswith("INFLUXDB_URL not set")
