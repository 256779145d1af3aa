"""The ccxt source pages through ``fetch_ohlcv``, never returns an open candle, and retries only what is worth it.

Runs against tests.fakes.FakeExchange: no live exchange is reachable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import ccxt
import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.sources import make_source
from marketkeeper.sources.base import (
    CandleSource,
    SourceError,
    SourceUnavailableError,
    UnknownExchangeError,
    UnknownSymbolError,
    UnsupportedTimeframeError,
)
from marketkeeper.sources.ccxt_source import DEFAULT_LIMIT, CcxtSource, make_exchange, per_call_limit
from tests.fakes import FakeExchange, make_rows

T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEY = SeriesKey.of("fakex", "BTC/USDT", "1m")


def collect(source: CandleSource, key: SeriesKey, start: datetime, end: datetime) -> pd.DataFrame:
    frames: list[pd.DataFrame] = []
    for batch in source.fetch_batches(key, start, end):
        assert not batch.rejects, batch.rejects
        if len(batch.frame):
            frames.append(batch.frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_pages_by_since_up_to_the_exchange_limit() -> None:
    # 2500 closed candles, the exchange serves 1000 per call: three pages, each starting after the last.
    rows = make_rows(T0, "1m", 2500)
    exchange = FakeExchange({("BTC/USDT", "1m"): rows}, now=T0 + timedelta(days=3), max_limit=1000)
    source = CcxtSource(exchange)

    batches = list(source.fetch_batches(KEY, T0, T0 + timedelta(minutes=2500)))

    assert [len(b.frame) for b in batches] == [1000, 1000, 500]
    assert [call[3] for call in exchange.calls] == [1000, 1000, 1000]
    sinces = [call[2] for call in exchange.calls]
    assert sinces[0] == int(T0.timestamp() * 1000)
    assert sinces[1] == rows[999][0] + 1
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    assert frame["open_time"].is_unique and frame["open_time"].is_monotonic_increasing
    assert frame["open_time"].iloc[-1] == pd.Timestamp(T0 + timedelta(minutes=2499))
    assert str(frame["open_time"].dtype) == "datetime64[ns, UTC]"
    assert frame["close"].iloc[0] == rows[0][4]


def test_limit_comes_from_features_or_the_constructor() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 50)}, now=T0 + timedelta(days=1), max_limit=20)
    list(CcxtSource(exchange).fetch_batches(KEY, T0, T0 + timedelta(minutes=50)))
    assert {call[3] for call in exchange.calls} == {20}

    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 50)}, now=T0 + timedelta(days=1), max_limit=20)
    frame = collect(CcxtSource(exchange, limit=7), KEY, T0, T0 + timedelta(minutes=50))
    assert {call[3] for call in exchange.calls} == {7}
    assert len(frame) == 50


def test_per_call_limit_reads_derivative_features_and_falls_back() -> None:
    class Exchange:
        features: ClassVar[dict[str, object]] = {
            "spot": {"fetchOHLCV": {"limit": 1000}},
            "swap": {"linear": {"fetchOHLCV": {"limit": 1500}}},
        }

    assert per_call_limit(Exchange(), {"type": "spot"}) == 1000
    assert per_call_limit(Exchange(), {"type": "swap", "linear": True}) == 1500
    assert per_call_limit(Exchange(), {"type": "option"}) == DEFAULT_LIMIT
    assert per_call_limit(object(), {"type": "spot"}) == DEFAULT_LIMIT


def test_fewer_rows_than_asked_is_not_the_end() -> None:
    # The exchange caps at 300 though we ask for 1000 (features say 1000): pagination must continue.
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 700)},
        now=T0 + timedelta(days=1),
        max_limit=300,
        features={"spot": {"fetchOHLCV": {"limit": 1000}}},
    )
    assert len(collect(CcxtSource(exchange), KEY, T0, T0 + timedelta(minutes=700))) == 700


def test_the_open_candle_is_never_returned() -> None:
    # The exchange's clock is 10:05:30; it serves the 10:05 candle, which is still open.
    now = T0 + timedelta(hours=10, minutes=5, seconds=30)
    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 24 * 60)}, now=now)
    frame = collect(CcxtSource(exchange), KEY, T0 + timedelta(hours=10), T0 + timedelta(hours=11))
    assert frame["open_time"].max() == pd.Timestamp(T0 + timedelta(hours=10, minutes=4))
    assert len(frame) == 5


def test_the_open_candle_is_excluded_exactly_on_a_boundary() -> None:
    now = T0 + timedelta(hours=1)
    exchange = FakeExchange({("BTC/USDT", "1h"): make_rows(T0, "1h", 5)}, now=now)
    frame = collect(CcxtSource(exchange), SeriesKey.of("fakex", "BTC/USDT", "1h"), T0, T0 + timedelta(hours=5))
    assert frame["open_time"].tolist() == [pd.Timestamp(T0)]


def test_a_range_entirely_in_the_future_asks_nothing() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 10)}, now=T0)
    assert list(CcxtSource(exchange).fetch_batches(KEY, T0, T0 + timedelta(minutes=10))) == []
    assert exchange.calls == []


def test_rows_outside_the_range_are_dropped() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 100)}, now=T0 + timedelta(days=1))
    frame = collect(CcxtSource(exchange), KEY, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert frame["open_time"].min() == pd.Timestamp(T0 + timedelta(minutes=10))
    assert frame["open_time"].max() == pd.Timestamp(T0 + timedelta(minutes=19))
    assert len(frame) == 10


def test_overlapping_pages_are_deduplicated() -> None:
    # This exchange rounds ``since`` down and so repeats the previous page's last candle on every page.
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 95)}, now=T0 + timedelta(days=1), max_limit=10, overlap=True
    )
    frame = collect(CcxtSource(exchange), KEY, T0, T0 + timedelta(minutes=95))
    assert len(frame) == 95
    assert frame["open_time"].is_unique


def test_stops_when_a_page_makes_no_progress() -> None:
    class Stuck(FakeExchange):
        def fetch_ohlcv(
            self,
            symbol: str,
            timeframe: str = "1m",
            since: int | None = None,
            limit: int | None = None,
            params: Mapping[str, Any] | None = None,
        ) -> list[list[Any]]:
            self.calls.append((symbol, timeframe, since, limit))
            return make_rows(T0, "1m", 3)  # always the same three candles, whatever ``since`` says

    exchange = Stuck({("BTC/USDT", "1m"): []}, now=T0 + timedelta(days=1))
    frame = collect(CcxtSource(exchange), KEY, T0, T0 + timedelta(hours=1))
    assert len(frame) == 3
    assert len(exchange.calls) == 2


def test_empty_page_ends_the_fetch() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 5)}, now=T0 + timedelta(days=1))
    frame = collect(CcxtSource(exchange), KEY, T0, T0 + timedelta(hours=1))
    assert len(frame) == 5
    assert len(exchange.calls) == 2


def test_network_errors_are_retried_with_exponential_backoff_then_succeed() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        failures=[ccxt.NetworkError("reset"), ccxt.RequestTimeout("slow"), ccxt.ExchangeNotAvailable("502")],
    )
    sleeps = Sleeps()
    frame = collect(CcxtSource(exchange, backoff=0.5, sleep=sleeps), KEY, T0, T0 + timedelta(minutes=10))
    assert len(frame) == 10
    assert sleeps == [0.5, 1.0, 2.0]


def test_rate_limit_backs_off_at_least_the_exchange_spacing() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        failures=[ccxt.RateLimitExceeded("429")] * 3,
    )
    exchange.rateLimit = 3000
    sleeps = Sleeps()
    frame = collect(CcxtSource(exchange, backoff=1.0, sleep=sleeps), KEY, T0, T0 + timedelta(minutes=10))
    assert len(frame) == 10
    assert sleeps == [3.0, 3.0, 4.0]


def test_backoff_is_capped() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        failures=[ccxt.NetworkError("down")] * 6,
    )
    sleeps = Sleeps()
    source = CcxtSource(exchange, max_retries=6, backoff=1.0, max_backoff=10.0, sleep=sleeps)
    collect(source, KEY, T0, T0 + timedelta(minutes=10))
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_gives_up_after_max_retries_naming_market_and_range() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        failures=[ccxt.NetworkError("connection refused")] * 10,
    )
    sleeps = Sleeps()
    with pytest.raises(SourceUnavailableError) as info:
        list(CcxtSource(exchange, max_retries=2, sleep=sleeps).fetch_batches(KEY, T0, T0 + timedelta(minutes=10)))
    message = str(info.value)
    assert "3 attempt(s)" in message and "connection refused" in message
    assert "fakex:BTC/USDT:1m" in message and "2024-01-01T00:00:00+00:00" in message
    assert len(exchange.calls) == 3 and len(sleeps) == 2
    assert isinstance(info.value.__cause__, ccxt.NetworkError)


def test_load_markets_is_retried_too() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        load_markets_failures=[ccxt.NetworkError("blip")],
    )
    assert len(collect(CcxtSource(exchange, sleep=Sleeps()), KEY, T0, T0 + timedelta(minutes=10))) == 10


def test_bad_symbol_from_the_exchange_is_not_retried() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        failures=[ccxt.BadSymbol("fakex does not have market symbol BTC/USDT")],
    )
    sleeps = Sleeps()
    with pytest.raises(UnknownSymbolError, match="BTC/USDT"):
        list(CcxtSource(exchange, sleep=sleeps).fetch_batches(KEY, T0, T0 + timedelta(minutes=10)))
    assert sleeps == [] and len(exchange.calls) == 1


def test_unlisted_symbol_is_a_clear_error_with_suggestions() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): make_rows(T0, "1m", 10)}, now=T0 + timedelta(days=1))
    with pytest.raises(UnknownSymbolError, match=r"does not list symbol 'BTC/USDTT'.*did you mean BTC/USDT"):
        list(CcxtSource(exchange).fetch_batches(SeriesKey.of("fakex", "BTC/USDTT", "1m"), T0, T0 + timedelta(hours=1)))
    assert exchange.calls == []


def test_other_exchange_errors_are_not_retried() -> None:
    exchange = FakeExchange(
        {("BTC/USDT", "1m"): make_rows(T0, "1m", 10)},
        now=T0 + timedelta(days=1),
        failures=[ccxt.AuthenticationError("bad key")],
    )
    sleeps = Sleeps()
    with pytest.raises(SourceError, match="AuthenticationError: bad key") as info:
        list(CcxtSource(exchange, sleep=sleeps).fetch_batches(KEY, T0, T0 + timedelta(minutes=10)))
    assert not isinstance(info.value, SourceUnavailableError)
    assert sleeps == []


def test_unsupported_timeframe_lists_the_supported_ones() -> None:
    exchange = FakeExchange({}, now=T0, symbols=["BTC/USDT"], timeframes={"1m": "1m", "1h": "60"})
    with pytest.raises(UnsupportedTimeframeError, match="no 4h candles; it supports 1m, 1h"):
        list(CcxtSource(exchange).fetch_batches(SeriesKey.of("fakex", "BTC/USDT", "4h"), T0, T0 + timedelta(days=1)))


def test_a_key_for_another_exchange_is_refused() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): []}, now=T0)
    with pytest.raises(SourceError, match="series is on 'binance' but this source reads 'fakex'"):
        list(CcxtSource(exchange).fetch_batches(SeriesKey.of("binance", "BTC/USDT", "1m"), T0, T0 + timedelta(hours=1)))


def test_malformed_rows_are_rejected_not_dropped() -> None:
    rows: list[list[object]] = [list(r) for r in make_rows(T0, "1m", 4)]
    rows[1] = [rows[1][0], "x", 1, 1]
    exchange = FakeExchange({("BTC/USDT", "1m"): rows}, now=T0 + timedelta(days=1))
    batches = list(CcxtSource(exchange).fetch_batches(KEY, T0, T0 + timedelta(minutes=4)))
    assert sum(len(b.frame) for b in batches) == 3
    rejects = [r for b in batches for r in b.rejects]
    assert len(rejects) == 1 and "expected 6 fields" in rejects[0].reason
    assert rejects[0].raw == repr(rows[1]) and rejects[0].line == 1


def test_start_after_end_is_refused() -> None:
    exchange = FakeExchange({("BTC/USDT", "1m"): []}, now=T0)
    with pytest.raises(ValueError, match="after end"):
        list(CcxtSource(exchange).fetch_batches(KEY, T0 + timedelta(hours=1), T0))


def test_make_exchange_builds_a_rate_limited_ccxt_exchange() -> None:
    exchange = make_exchange("binance", timeout=5000)
    assert isinstance(exchange, ccxt.binance)
    assert exchange.enableRateLimit is True
    assert exchange.timeout == 5000


def test_unknown_exchange_id_is_a_clear_error() -> None:
    with pytest.raises(UnknownExchangeError, match=r"unknown exchange id 'binanse'; did you mean binance"):
        make_exchange("binanse")
    with pytest.raises(UnknownExchangeError, match=r"see ccxt\.exchanges"):
        make_exchange("no-such-exchange-anywhere")
    with pytest.raises(UnknownExchangeError):
        make_source("ccxt", exchange="binanse")


def test_make_source_spellings() -> None:
    assert make_source("ccxt:binance").name == "ccxt:binance"
    assert make_source("ccxt", exchange="kraken").name == "ccxt:kraken"
    assert make_source("files:/data/klines").name == "files:/data/klines"
    assert make_source("synthetic").name == "synthetic:0"
    assert make_source("synthetic", seed=5).name == "synthetic:5"
    assert make_source("synthetic:42").name == "synthetic:42"
    for bad in ("csv", "files:", "synthetic:x", "ccxt"):
        with pytest.raises(ConfigurationError):
            make_source(bad)
