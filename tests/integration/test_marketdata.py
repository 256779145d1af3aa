"""The market-data provider against the real stores: exact candles, routing and on-the-fly resampling equal to
the tiers' resampler, typed errors, streaming, coverage, metadata, and a cache that is never stale after any
write path (ingest, backfill, deletion) and degrades to uncached reads when Redis is down."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.marketdata import (
    AsyncHistoricalDataProvider,
    HistoricalDataProvider,
    UnknownMarketError,
    UnknownTimeframeError,
)
from marketkeeper.markets import MarketSpec
from marketkeeper.redis_client import RedisClient
from marketkeeper.services.gaps import BackfillRequest, backfill_market
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.sources import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.tiers import resample_candles
from marketkeeper.timeframes import NaiveDatetimeError
from tests.conftest import INFLUXDB_TEST_URL
from tests.integration.marketdata_support import own_redis_prefix  # noqa: F401 - the fixture `prefix`

pytestmark = pytest.mark.integration

EXCHANGE = "mdtest"
T0 = datetime(2024, 5, 6, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SPEC = MarketSpec(exchange=EXCHANGE, symbol="BTC/USDT", base_timeframe="1m", source="synthetic:1")
HOURLY = MarketSpec(exchange=EXCHANGE, symbol="ETH/USDT", base_timeframe="1h", source="synthetic:2")
KEY = SPEC.key


@pytest.fixture
def ledger(pg_ledger: str) -> Iterator[str]:
    yield pg_ledger
    engine = create_ledger_engine(pg_ledger)
    with engine.begin() as conn:
        for table in ("quarantined_candles", "data_quality_runs", "candles", "trading_signals"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
        conn.execute(
            sa.text("DELETE FROM candle_gaps WHERE market_id IN (SELECT id FROM markets WHERE exchange = :e)"),
            {"e": EXCHANGE},
        )
        conn.execute(sa.text("DELETE FROM markets WHERE exchange = :e"), {"e": EXCHANGE})
    engine.dispose()


@pytest.fixture(params=["postgresql", "influxdb"])
def config(request: pytest.FixtureRequest, ledger: str, redis_url: str, prefix: str) -> StoreConfig:
    """The stores with Redis, candles in PostgreSQL or in InfluxDB."""
    influxdb = None
    if request.param == "influxdb":
        database = request.getfixturevalue("influxdb_client").database
        influxdb = lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=database)  # noqa: E731
    return StoreConfig(ledger_url=ledger, influxdb=influxdb, redis=lambda: RedisClient(redis_url, prefix=prefix))


def provider_of(config: StoreConfig, **options: object) -> HistoricalDataProvider:
    return HistoricalDataProvider(config, markets=[SPEC, HOURLY], clock=lambda: NOW, **options)  # type: ignore[arg-type]


def ingest(config: StoreConfig, spec: MarketSpec, start: datetime, end: datetime, seed: int = 1) -> int:
    report = ingest_series(
        config, IngestRequest(spec, start, end), now=NOW, source=SyntheticSource(seed, clock=lambda: NOW)
    )
    return report.written


def stored(config: StoreConfig, key: SeriesKey, start: datetime, end: datetime) -> pd.DataFrame:
    with StoreSet.open(config) as stores:
        return stores.candles.read(key, start, end)


def test_candles_come_back_exactly_as_stored_and_cached_reads_equal_them(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + 6 * HOUR)
    expected = stored(config, KEY, T0, T0 + 6 * HOUR)
    with provider_of(config) as provider:
        first = provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 6 * HOUR)
        again = provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 6 * HOUR)
        stats = provider.metrics.snapshot()
        again.loc[0, "close"] = -1.0
        pd.testing.assert_frame_equal(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 6 * HOUR), expected)
    pd.testing.assert_frame_equal(first, expected)
    assert len(first) == 360 and str(first["open_time"].dt.tz) == "UTC"
    with provider_of(config) as other:  # another process: its first hit comes out of Redis itself
        shared = other.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 6 * HOUR)
        assert other.metrics.snapshot().cache_local_hits == 0 and other.metrics.snapshot().cache_hits == 1
    pd.testing.assert_frame_equal(shared, expected)
    # Bit for bit: no float went through text or Decimal on the way.
    assert np.array_equal(first["close"].to_numpy().view(np.int64), expected["close"].to_numpy().view(np.int64))
    assert (stats.queries, stats.cache_hits, stats.cache_local_hits, stats.cache_misses) == (2, 1, 1, 1)
    assert stats.rows_served == 720
    assert stats.cache_hit_ratio == 0.5 and stats.latency_p99_ms is not None


def test_a_timeframe_not_stored_is_resampled_from_the_base_exactly_as_the_tiers_resample(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + 6 * HOUR)
    base = stored(config, KEY, T0, T0 + 6 * HOUR)
    with provider_of(config) as provider:
        route = provider.route(EXCHANGE, "BTC/USDT", "1h")
        hourly = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 6 * HOUR)
        streamed = list(provider.iter_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 6 * HOUR, chunk_rows=77))
    assert (route.kind, route.source) == ("resampled:1m", KEY)
    pd.testing.assert_frame_equal(hourly, resample_candles(base, "1m", "1h", closed_before=NOW))
    assert len(hourly) == 6 and set(hourly["source_count"]) == {60} and set(hourly["expected_count"]) == {60}
    # Frames of 77 base candles cut buckets apart; the stream still builds every bucket whole.
    pd.testing.assert_frame_equal(pd.concat(streamed, ignore_index=True), hourly)


def test_incomplete_buckets_are_counted_never_filled_and_complete_only_drops_them(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + 3 * HOUR)
    with StoreSet.open(config) as stores:
        assert (
            stores.candles.delete_range(KEY, T0 + HOUR + timedelta(minutes=10), T0 + HOUR + timedelta(minutes=15)) == 5
        )
    with provider_of(config) as provider:
        every = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 3 * HOUR)
        whole = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 3 * HOUR, complete_only=True)
        coverage = provider.coverage(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 3 * HOUR)
        minutes = provider.coverage(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 3 * HOUR)
    assert every["source_count"].tolist() == [60, 55, 60]
    assert whole["open_time"].tolist() == [T0, T0 + 2 * HOUR]
    assert [(b.open_time, b.source_count, b.expected_count) for b in coverage.incomplete] == [(T0 + HOUR, 55, 60)]
    gap = (T0 + HOUR + timedelta(minutes=10), T0 + HOUR + timedelta(minutes=15), 5)
    assert [(g.start, g.end, g.missing) for g in coverage.gaps] == [gap]
    assert [(g.start, g.end, g.missing) for g in minutes.gaps] == [gap]
    assert [(r.start, r.end, r.candles) for r in minutes.stored] == [
        (T0, gap[0], 70),
        (gap[1], T0 + 3 * HOUR, 105),
    ]
    assert coverage.route == "resampled:1m" and minutes.route == "stored"


def test_unknown_markets_and_timeframes_raise_typed_errors_naming_what_exists(config: StoreConfig) -> None:
    with provider_of(config) as provider:
        with pytest.raises(UnknownMarketError, match=r"mdtest:BTC/USDT, mdtest:ETH/USDT") as market:
            provider.get_candles(EXCHANGE, "DOGE/USDT", "1m", T0, T0 + HOUR)
        with pytest.raises(UnknownTimeframeError, match=r"serves: 1h, 2h, 4h, 6h, 8h, 12h, 1d, 1w, 1M") as tf:
            provider.get_candles(EXCHANGE, "ETH/USDT", "15m", T0, T0 + HOUR)
        with pytest.raises(UnknownTimeframeError, match="no such timeframe"):
            provider.get_candles(EXCHANGE, "ETH/USDT", "7m", T0, T0 + HOUR)
        with pytest.raises(NaiveDatetimeError):
            provider.get_candles(EXCHANGE, "ETH/USDT", "1h", datetime(2024, 5, 6), T0 + HOUR)  # noqa: DTZ001
        errors = provider.metrics.snapshot().errors
    assert market.value.known == ("mdtest:BTC/USDT", "mdtest:ETH/USDT")
    assert "15m" not in tf.value.known and "1h" in tf.value.known
    assert errors == 4


def test_metadata_names_the_declaration_first_last_and_30_day_figures(config: StoreConfig) -> None:
    ingest(config, HOURLY, T0, T0 + 48 * HOUR)
    frame = stored(config, HOURLY.key, T0, T0 + 48 * HOUR)
    with provider_of(config) as provider:
        meta = provider.metadata(EXCHANGE, "ETH/USDT")
        markets = [m.label for m in provider.markets()]
    assert markets == ["mdtest:BTC/USDT", "mdtest:ETH/USDT"]
    assert (meta.first_open_time, meta.last_open_time) == (T0, T0 + 47 * HOUR)
    assert (meta.min_close, meta.max_close) == (frame["close"].min(), frame["close"].max())
    assert meta.volume == pytest.approx(frame["volume"].sum())
    assert meta.as_dict()["timeframes"][0] == "1h"
    with provider_of(config) as provider:
        assert provider.metadata("mdtest:ETH/USDT") == meta


# --- never stale -----------------------------------------------------------------------------------------


def test_a_read_after_an_ingest_correction_returns_the_new_candles_not_the_cached_ones(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + 2 * HOUR, seed=1)
    with provider_of(config) as provider:
        before = provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR)
        hourly = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 2 * HOUR)
        assert provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR).equals(before)  # cached
        assert ingest(config, SPEC, T0 + HOUR, T0 + 2 * HOUR, seed=9) == 60  # the exchange corrected an hour
        after = provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR)
        hourly_after = provider.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 2 * HOUR)
    now_stored = stored(config, KEY, T0, T0 + 2 * HOUR)
    pd.testing.assert_frame_equal(after, now_stored)
    assert not after["close"].equals(before["close"])
    pd.testing.assert_frame_equal(hourly_after, resample_candles(now_stored, "1m", "1h"))
    assert hourly_after["close"].iloc[1] != hourly["close"].iloc[1]


def test_a_read_after_a_backfill_sees_the_filled_gap(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + HOUR)
    ingest(config, SPEC, T0 + 2 * HOUR, T0 + 3 * HOUR)
    with provider_of(config) as provider:
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 3 * HOUR)) == 120
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 3 * HOUR)) == 120  # cached
        report = backfill_market(
            config,
            BackfillRequest(SPEC, T0, T0 + 3 * HOUR),
            now=NOW,
            source=SyntheticSource(1, clock=lambda: NOW),
        )
        assert report.filled == 1
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 3 * HOUR)) == 180


def test_a_read_after_an_announced_deletion_no_longer_returns_the_deleted_candles(
    config: StoreConfig, redis_url: str, prefix: str
) -> None:
    ingest(config, SPEC, T0, T0 + 2 * HOUR)
    with provider_of(config) as provider:
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR)) == 120
        with StoreSet.open(config) as stores:
            rows = stores.candles.delete_range(KEY, T0, T0 + HOUR)
            assert stores.cache is not None
            stores.cache.publish_deleted(KEY, start=T0, end=T0 + HOUR, rows=rows)
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR)) == 60


def test_versions_move_on_every_announcement_and_restart_above_old_entries(redis_url: str, prefix: str) -> None:
    cache = CandleCache(RedisClient(redis_url, prefix=prefix))
    first = cache.version(KEY)
    frame = stored_frame()
    cache.publish_written(KEY, frame, start=T0, end=T0 + timedelta(minutes=2))
    second = cache.version(KEY)
    cache.publish_deleted(KEY, start=T0, end=T0 + timedelta(minutes=2), rows=2)
    third = cache.version(KEY)
    assert first < second < third
    # Evicted, or Redis restarted without it: the version restarts at the clock (microseconds), above every
    # version the old key reached, so no entry keyed by an old version can be hit again.
    cache.client.raw.delete(cache.version_key(KEY))
    assert cache.version(KEY) > third


def stored_frame() -> pd.DataFrame:
    times = pd.date_range(T0, periods=2, freq="1min", tz="UTC")
    return pd.DataFrame({"open_time": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0})


def test_redis_down_degrades_to_uncached_reads_with_one_warning(ledger: str, caplog: pytest.LogCaptureFixture) -> None:
    config = StoreConfig(ledger_url=ledger, redis=lambda: RedisClient("redis://127.0.0.1:1/0", socket_timeout=0.2))
    ingest(StoreConfig(ledger_url=ledger), SPEC, T0, T0 + HOUR)
    with caplog.at_level(logging.WARNING, logger="marketkeeper.marketdata"), provider_of(config) as provider:
        for _ in range(3):
            assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + HOUR)) == 60
        stats = provider.metrics.snapshot()
    warnings = [r for r in caplog.records if "Redis candle cache failed" in r.getMessage()]
    assert len(warnings) == 1
    assert (stats.errors, stats.cache_errors, stats.cache_hits) == (0, 3, 0)


def test_answers_above_the_entry_bound_are_served_but_not_cached(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + HOUR)
    with provider_of(config, cache_max_entry_bytes=1000) as provider:
        for _ in range(2):
            assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + HOUR)) == 60
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + timedelta(minutes=5))) == 5
        assert len(provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + timedelta(minutes=5))) == 5
        stats = provider.metrics.snapshot()
    assert (stats.cache_hits, stats.cache_misses) == (1, 3)


def test_diagnostics_report_each_store_and_the_figures(config: StoreConfig) -> None:
    with provider_of(config) as provider:
        provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + HOUR)
        report = provider.diagnostics().as_dict()
    assert report["reachable"] is True
    assert [s["store"] for s in report["stores"]] == ["ledger", "influxdb", "redis"]  # type: ignore[union-attr]
    assert report["queries"] == 1 and report["cache_enabled"] is True


def test_streaming_a_long_range_holds_a_frame_at_a_time_not_the_range(ledger: str) -> None:
    config = StoreConfig(ledger_url=ledger)
    rows = 200_000
    times = pd.date_range(T0, periods=rows, freq="1min", tz="UTC")
    walk = 100 + np.cumsum(np.random.default_rng(3).normal(0, 0.1, rows))
    frame = pd.DataFrame(
        {"open_time": times, "open": walk, "high": walk + 1, "low": walk - 1, "close": walk, "volume": 1.0}
    )
    with StoreSet.open(config) as stores:
        stores.candles.write(KEY, frame)
    end = T0 + timedelta(minutes=rows)

    def peak(action: Callable[[], object]) -> int:
        tracemalloc.start()
        try:
            action()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def drain(timeframe: str) -> int:
        return sum(len(f) for f in provider.iter_candles(EXCHANGE, "BTC/USDT", timeframe, T0, end, chunk_rows=10_000))

    with provider_of(config) as provider:
        whole = peak(lambda: provider.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, end))
        streamed = peak(lambda: drain("1m"))
        resampled = peak(lambda: drain("1h"))
        # Hours after NOW have not closed yet: the stream and the one-frame read both stop at NOW.
        assert (
            drain("1m") == rows and drain("1h") == len(provider.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, end)) == 624
        )
    assert streamed * 5 < whole and resampled * 5 < whole, (streamed, resampled, whole)


def test_the_asyncio_twin_answers_as_the_sync_provider_with_calls_overlapping(config: StoreConfig) -> None:
    ingest(config, SPEC, T0, T0 + 2 * HOUR)
    ingest(config, HOURLY, T0, T0 + 24 * HOUR)

    async def main() -> tuple[list[pd.DataFrame], list[pd.DataFrame], int]:
        async with AsyncHistoricalDataProvider(provider_of(config), max_workers=4) as md:
            answers = await asyncio.gather(
                md.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR),
                md.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 2 * HOUR),
                md.get_candles(EXCHANGE, "ETH/USDT", "1d", T0, T0 + 24 * HOUR),
            )
            frames = [f async for f in md.iter_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR, chunk_rows=50)]
            with pytest.raises(UnknownMarketError):
                await md.get_candles(EXCHANGE, "DOGE/USDT", "1m", T0, T0 + HOUR)
            return list(answers), frames, (await md.diagnostics()).stats.queries

    answers, frames, queries = asyncio.run(main())
    with provider_of(config) as sync:
        expected = [
            sync.get_candles(EXCHANGE, "BTC/USDT", "1m", T0, T0 + 2 * HOUR),
            sync.get_candles(EXCHANGE, "BTC/USDT", "1h", T0, T0 + 2 * HOUR),
            sync.get_candles(EXCHANGE, "ETH/USDT", "1d", T0, T0 + 24 * HOUR),
        ]
    for got, want in zip(answers, expected, strict=True):
        pd.testing.assert_frame_equal(got, want)
    assert [len(f) for f in frames] == [50, 50, 20]
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), expected[0])
    assert queries == 5
