"""The provider over derived tiers written by downsampling, on the real stores: a stored tier and the same
timeframe resampled on the fly are identical (values and completeness counts, 1w from the 1d tier included),
a declared tier not written yet is resampled meanwhile, and a read after a downsample or a retention run never
returns what the cache held before it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.marketdata import HistoricalDataProvider
from marketkeeper.markets import MarketSpec
from marketkeeper.redis_client import RedisClient
from marketkeeper.services.downsample import DownsampleRequest, downsample_market
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.services.retention import apply_retention
from marketkeeper.sources import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from tests.conftest import INFLUXDB_TEST_URL
from tests.integration.marketdata_support import own_redis_prefix  # noqa: F401 - the fixture `prefix`

pytestmark = pytest.mark.integration

EXCHANGE = "tiertest"
START = datetime(2024, 4, 1, tzinfo=UTC)  # a Monday
END = START + timedelta(days=14)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
TIERED = MarketSpec(
    exchange=EXCHANGE,
    symbol="BTC/USDT",
    base_timeframe="1m",
    source="synthetic:4",
    derived=["1h", "1d", "1w"],
    retention_days={"1m": 3650},
)
PLAIN = TIERED.model_copy(update={"derived": ()})  # the same market without stored tiers: everything on the fly


@pytest.fixture(params=["postgresql", "influxdb"])
def config(request: pytest.FixtureRequest, pg_ledger: str, redis_url: str, prefix: str) -> Iterator[StoreConfig]:
    influxdb = None
    if request.param == "influxdb":
        database = request.getfixturevalue("influxdb_client").database
        influxdb = lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=database)  # noqa: E731
    yield StoreConfig(ledger_url=pg_ledger, influxdb=influxdb, redis=lambda: RedisClient(redis_url, prefix=prefix))
    engine = create_ledger_engine(pg_ledger)
    with engine.begin() as conn:
        for table in (
            "quarantined_candles",
            "data_quality_runs",
            "candles",
            "pending_downsamples",
            "retention_horizons",
        ):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
        conn.execute(sa.text("DELETE FROM markets WHERE exchange = :e"), {"e": EXCHANGE})
    engine.dispose()


def ingest(config: StoreConfig, start: datetime, end: datetime, seed: int = 4) -> None:
    ingest_series(config, IngestRequest(TIERED, start, end), now=NOW, source=SyntheticSource(seed, clock=lambda: NOW))


def test_stored_tiers_and_on_the_fly_resampling_give_identical_candles_and_counts(config: StoreConfig) -> None:
    ingest(config, START, END)
    with StoreSet.open(config) as stores:  # holes, so some buckets are incomplete
        stores.candles.delete_range(
            TIERED.key, START + timedelta(hours=5, minutes=3), START + timedelta(hours=5, minutes=9)
        )
        stores.candles.delete_range(TIERED.key, START + timedelta(days=9), START + timedelta(days=9, hours=2))
    downsample_market(config, DownsampleRequest(TIERED, START, END), now=NOW)
    with (
        HistoricalDataProvider(config, markets=[TIERED], clock=lambda: NOW) as tiered,
        HistoricalDataProvider(config, markets=[PLAIN], clock=lambda: NOW) as plain,
    ):
        for tf in ("1h", "1d", "1w"):
            stored = tiered.get_candles(EXCHANGE, "BTC/USDT", tf, START, END)
            on_the_fly = plain.get_candles(EXCHANGE, "BTC/USDT", tf, START, END)
            assert (tiered.route(EXCHANGE, "BTC/USDT", tf).kind, plain.route(EXCHANGE, "BTC/USDT", tf).kind) == (
                "derived",
                "resampled:1m",
            )
            pd.testing.assert_frame_equal(stored, on_the_fly, obj=tf)
            assert (stored["source_count"] < stored["expected_count"]).sum() > 0, tf
            whole = tiered.get_candles(EXCHANGE, "BTC/USDT", tf, START, END, complete_only=True)
            pd.testing.assert_frame_equal(
                whole, plain.get_candles(EXCHANGE, "BTC/USDT", tf, START, END, complete_only=True)
            )
        coverage = tiered.coverage(EXCHANGE, "BTC/USDT", "1h", START, END)
        assert [(b.open_time, b.source_count) for b in coverage.incomplete] == [
            (START + timedelta(hours=5), 54),
        ]
        assert coverage.gaps[0].start == START + timedelta(days=9)  # the 1h tier misses the two empty hours
        minutes = tiered.coverage(EXCHANGE, "BTC/USDT", "1m", START, END)
        assert (minutes.retention_days, minutes.retention_horizon, coverage.retention_days) == (3650, None, None)


def test_a_declared_tier_not_written_yet_is_resampled_meanwhile(config: StoreConfig) -> None:
    ingest(config, START, START + timedelta(days=1))
    with HistoricalDataProvider(config, markets=[TIERED], clock=lambda: NOW) as provider:
        assert provider.route(EXCHANGE, "BTC/USDT", "1h").kind == "resampled:1m"
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1h", START, START + timedelta(days=1))) == 24
        downsample_market(config, DownsampleRequest(TIERED, START, START + timedelta(days=1)), now=NOW)
        assert provider.route(EXCHANGE, "BTC/USDT", "1h").kind == "derived"


def test_a_read_after_a_downsample_returns_the_recomputed_tier_not_the_cached_one(config: StoreConfig) -> None:
    day = (START, START + timedelta(days=1))
    ingest(config, *day)
    downsample_market(config, DownsampleRequest(TIERED, *day), now=NOW)
    with HistoricalDataProvider(config, markets=[TIERED], clock=lambda: NOW) as provider:
        before = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", *day)
        assert provider.get_candles(EXCHANGE, "BTC/USDT", "1h", *day).equals(before)  # a cache hit
        # The exchange corrects an hour of 1m candles; ingestion writes them, downsampling recomputes the tier.
        ingest(config, START + timedelta(hours=3), START + timedelta(hours=4), seed=99)
        downsample_market(
            config, DownsampleRequest(TIERED, START + timedelta(hours=3), START + timedelta(hours=4)), now=NOW
        )
        after = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", *day)
        hits = provider.metrics.snapshot().cache_hits
    with StoreSet.open(config) as stores:
        pd.testing.assert_frame_equal(after, stores.candles.read(TIERED.tier_key("1h"), *day))
    assert after["close"].iloc[3] != before["close"].iloc[3] and hits == 1


def test_a_read_after_retention_no_longer_returns_the_deleted_candles(config: StoreConfig) -> None:
    market = MarketSpec(
        exchange=EXCHANGE,
        symbol="ETH/USDT",
        base_timeframe="1h",
        source="synthetic:5",
        derived=[],
        retention_days={"1h": 30},
    )
    first, last = datetime(2024, 4, 28, tzinfo=UTC), datetime(2024, 5, 6, tzinfo=UTC)
    ingest_series(config, IngestRequest(market, first, last), now=NOW, source=SyntheticSource(5, clock=lambda: NOW))
    with HistoricalDataProvider(config, markets=[market], clock=lambda: NOW) as provider:
        assert len(provider.get_candles(EXCHANGE, "ETH/USDT", "1h", first, last)) == 8 * 24
        assert len(provider.get_candles(EXCHANGE, "ETH/USDT", "1h", first, last)) == 8 * 24  # a cache hit
        report = apply_retention(config, [market], now=NOW)
        cut = datetime(2024, 5, 2, tzinfo=UTC)  # 30 days before NOW, on a whole day
        assert report.items[0].deleted == 4 * 24
        after = provider.get_candles(EXCHANGE, "ETH/USDT", "1h", first, last)
        coverage = provider.coverage(EXCHANGE, "ETH/USDT", "1h", first, last)
    assert after["open_time"].min() == cut and len(after) == 4 * 24
    assert (coverage.retention_horizon, coverage.retention_days) == (cut, 30)
