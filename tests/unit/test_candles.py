"""Every candle frame has one shape: known columns, UTC nanosecond open times, float prices, sorted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from marketkeeper.candles import (
    CANDLE_COLUMNS,
    REQUIRED_COLUMNS,
    CandleFrameError,
    SeriesKey,
    empty_frame,
    normalize_frame,
    open_time_ns,
)
from marketkeeper.timeframes import Timeframe, TimeframeError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_series_key() -> None:
    key = SeriesKey("binance", "BTC/USDT", "1m")  # type: ignore[arg-type]
    assert key.timeframe == Timeframe.parse("1m")
    assert key == SeriesKey.of("binance", "BTC/USDT", Timeframe.parse("1m"))
    assert str(key) == "binance:BTC/USDT:1m"
    assert len({key, SeriesKey.of("binance", "BTC/USDT", "1m")}) == 1
    with pytest.raises(TimeframeError):
        SeriesKey.of("binance", "BTC/USDT", "7m")
    with pytest.raises(ValueError, match="symbol"):
        SeriesKey.of("binance", " ", "1m")


def test_empty_frame_has_the_canonical_dtypes() -> None:
    frame = empty_frame()
    assert tuple(frame.columns) == CANDLE_COLUMNS
    assert str(frame["open_time"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["close"].dtype) == "float64" and str(frame["trade_count"].dtype) == "Int64"
    assert tuple(empty_frame(optional=False).columns) == REQUIRED_COLUMNS
    pd.testing.assert_frame_equal(normalize_frame(frame), frame)


def test_normalize_coerces_sorts_and_keeps_every_row() -> None:
    plus_one = timezone(timedelta(hours=1))
    raw = pd.DataFrame(
        {
            "open": ["2", "1", "3"],
            "open_time": [datetime(2024, 1, 1, 1, 2, tzinfo=plus_one), T0, T0],
            "high": [2, 1, 3],
            "low": [2, 1, None],
            "close": [2, 1, 3],
            "volume": [1, 1, 1],
            "trade_count": [5, None, 7],
            "exchange": ["x", "x", "x"],
        },
        index=[10, 11, 12],
    )
    frame = normalize_frame(raw)
    assert list(frame.columns) == ["open_time", "open", "high", "low", "close", "volume", "trade_count"]
    assert str(frame["open_time"].dtype) == "datetime64[ns, UTC]"
    assert frame["open_time"].tolist() == [pd.Timestamp(T0)] * 2 + [pd.Timestamp(T0 + timedelta(minutes=2))]
    assert frame["open"].tolist() == [1.0, 3.0, 2.0]  # stable: equal times keep their order
    assert frame["low"].isna().sum() == 1  # nulls are the quality gate's to judge
    assert frame["trade_count"].tolist()[:2] == [pd.NA, 7]
    assert list(frame.index) == [0, 1, 2]
    assert open_time_ns(frame)[0] == int(pd.Timestamp(T0).value)


def test_missing_columns_are_named() -> None:
    with pytest.raises(CandleFrameError, match="missing column\\(s\\) high, volume"):
        normalize_frame(pd.DataFrame({"open_time": [T0], "open": [1], "low": [1], "close": [1]}))


def test_naive_or_numeric_times_are_refused() -> None:
    base = {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]}
    with pytest.raises(CandleFrameError, match="naive"):
        normalize_frame(pd.DataFrame({"open_time": [pd.Timestamp("2024-01-01")], **base}))
    with pytest.raises(CandleFrameError, match="numeric"):
        normalize_frame(pd.DataFrame({"open_time": [1704067200000], **base}))
    with pytest.raises(CandleFrameError, match="column close cannot be read as numbers"):
        normalize_frame(pd.DataFrame({"open_time": [T0], **{**base, "close": ["abc"]}}))
    with pytest.raises(CandleFrameError, match="trade_count"):
        normalize_frame(pd.DataFrame({"open_time": [T0], **base, "trade_count": [1.5]}))
    with pytest.raises(CandleFrameError, match=r"^open_time values are naive"):
        normalize_frame(pd.DataFrame({"open_time": ["2024-01-01 00:00"], **base}))
    with pytest.raises(CandleFrameError, match="cannot be read as datetimes"):
        normalize_frame(pd.DataFrame({"open_time": ["yesterday-ish"], **base}))
    iso = normalize_frame(pd.DataFrame({"open_time": ["2024-01-01T00:00:00Z"], **base}))
    assert iso["open_time"].tolist() == [pd.Timestamp(T0)]
