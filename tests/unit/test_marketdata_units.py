"""The market-data pieces that need no server: the cache's frame encoding, routing over a declaration, and
the API keys as a secret."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketkeeper.marketdata import UnknownMarketError, UnknownTimeframeError
from marketkeeper.marketdata.cache import decode_frame, encode_frame
from marketkeeper.marketdata.routing import Router
from marketkeeper.markets import MarketSpec
from marketkeeper.settings import Settings


def frame(n: int) -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC").as_unit("ns")  # as the stores give them
    values = np.array([0.1 + 0.2, 1e-300, -0.0, 5e-324, 1.7976931348623157e308] * n)[:n]
    return pd.DataFrame(
        {
            "open_time": times,
            "close": values,
            "quote_volume": np.where(np.arange(n) % 2, np.nan, values),
            "trade_count": pd.array([None if i % 3 == 0 else 2**62 + i for i in range(n)], dtype="Int64"),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 7])
def test_the_cache_encoding_gives_back_the_very_frame(n: int) -> None:
    original = frame(n)
    back = decode_frame(encode_frame(original))
    pd.testing.assert_frame_equal(back, original)
    assert np.array_equal(back["close"].to_numpy().view(np.int64), original["close"].to_numpy().view(np.int64))


def test_a_damaged_cache_entry_is_refused_not_misread() -> None:
    blob = encode_frame(frame(5))
    for bad in (blob[:-3], blob + b"x", b"NOPE" + blob[4:]):
        with pytest.raises(ValueError, match=r"cached candle frame|not a cached"):
            decode_frame(bad)


def test_routing_prefers_stored_then_the_finest_dividing_base() -> None:
    specs = [
        MarketSpec(exchange="x", symbol="A/B", base_timeframe="1h", source="synthetic", derived=["1d"]),
        MarketSpec(exchange="x", symbol="A/B", base_timeframe="5m", source="synthetic", derived=[]),
    ]
    router = Router(specs)
    assert router.route("x", "A/B", "1h").kind == "stored"
    assert router.route("x", "A/B", "1d").kind == "derived"
    assert router.route("x", "A/B", "15m").kind == "resampled:5m"
    assert router.route("x", "A/B", "1w").kind == "resampled:5m"
    with pytest.raises(UnknownTimeframeError, match="serves: 5m, 15m, 30m, 1h"):
        router.route("x", "A/B", "3m")
    with pytest.raises(UnknownMarketError, match="declared markets: x:A/B"):
        router.route("x", "B/C", "1h")


def test_api_keys_are_a_secret_of_the_settings() -> None:
    settings = Settings(marketkeeper_api_keys=" key-one , key-two ")
    assert "key-one" not in repr(settings) and "key-one" not in str(settings)
    assert {"key-one", "key-two"} <= set(settings.secrets)
    assert Settings(marketkeeper_api_keys="").marketkeeper_api_keys is None
