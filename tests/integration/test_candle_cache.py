"""Latest candles, watermarks and write notifications in the real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.redis_client import RedisClient

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def candles(start: datetime, n: int, price: float = 100.0) -> pd.DataFrame:
    times = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open_time": times,
            "open": [price + i for i in range(n)],
            "high": [price + i + 1.5 for i in range(n)],
            "low": [price + i - 1 for i in range(n)],
            "close": [price + i + 0.1 for i in range(n)],
            "volume": [10.0 + i for i in range(n)],
        }
    )


@pytest.fixture
def cache(redis_url: str, redis_prefix: str) -> CandleCache:
    return CandleCache(RedisClient(redis_url, prefix=redis_prefix))


def test_latest_candle_and_watermark_follow_the_newest_write(cache: CandleCache) -> None:
    key = SeriesKey.of("binance", "BTC/USDT", "1m")
    assert cache.latest(key) is None and cache.watermark(key) is None

    assert cache.publish_written(key, candles(T0, 60), start=T0, end=T0 + timedelta(hours=1))
    latest = cache.latest(key)
    assert latest is not None
    assert latest.open_time == T0 + timedelta(minutes=59)
    assert latest.close == 159.1
    assert cache.watermark(key) == T0 + timedelta(hours=1)


def test_a_backfill_of_older_candles_never_regresses_latest_or_watermark(cache: CandleCache) -> None:
    key = SeriesKey.of("binance", "ETH/USDT", "1m")
    cache.publish_written(
        key,
        candles(T0 + timedelta(hours=5), 60, 200.0),
        start=T0 + timedelta(hours=5),
        end=T0 + timedelta(hours=6),
    )
    changed = cache.publish_written(key, candles(T0, 60, 100.0), start=T0, end=T0 + timedelta(hours=1))
    assert changed is False
    latest = cache.latest(key)
    assert latest is not None and latest.open_time == T0 + timedelta(hours=5, minutes=59)
    assert cache.watermark(key) == T0 + timedelta(hours=6)


def test_each_write_is_announced_on_the_series_channel(cache: CandleCache) -> None:
    key = SeriesKey.of("kraken", 'we"ird, sym=bol \\ 🚀', "1m")
    pubsub = cache.client.raw.pubsub()
    pubsub.subscribe(cache.channel(key))
    assert pubsub.get_message(timeout=1.0)["type"] == "subscribe"  # type: ignore[index]

    cache.publish_written(key, candles(T0, 3), start=T0, end=T0 + timedelta(minutes=3))
    message = pubsub.get_message(timeout=2.0)
    pubsub.close()
    assert message is not None
    body = json.loads(message["data"])
    assert body["series"] == {"exchange": "kraken", "symbol": 'we"ird, sym=bol \\ 🚀', "timeframe": "1m"}
    assert body["rows"] == 3
    assert body["latest"]["open_time"] == "2024-03-01T00:02:00+00:00"


def test_empty_frame_publishes_nothing(cache: CandleCache) -> None:
    key = SeriesKey.of("binance", "SOL/USDT", "1m")
    assert cache.publish_written(key, candles(T0, 0), start=T0, end=T0 + timedelta(hours=1)) is False
    assert cache.watermark(key) is None
