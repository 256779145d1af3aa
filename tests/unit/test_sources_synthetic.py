"""The synthetic source is deterministic, chunk-independent, plausible, and leaves holes only where asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.sources import SyntheticSource
from marketkeeper.timeframes import TIMEFRAMES, Timeframe

T0 = datetime(2024, 1, 1, tzinfo=UTC)
LATER = datetime(2030, 1, 1, tzinfo=UTC)
BTC = SeriesKey.of("binance", "BTC/USDT", "1m")


def synthetic(seed: int = 1, **kwargs: object) -> SyntheticSource:
    return SyntheticSource(seed, clock=lambda: LATER, **kwargs)  # type: ignore[arg-type]


def read(source: SyntheticSource, key: SeriesKey, start: datetime, end: datetime) -> pd.DataFrame:
    frames: list[pd.DataFrame] = []
    for batch in source.fetch_batches(key, start, end):
        assert not batch.rejects, batch.rejects
        if len(batch.frame):
            frames.append(batch.frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def test_same_seed_same_candles_other_seed_or_series_other_candles() -> None:
    end = T0 + timedelta(hours=6)
    first = read(synthetic(1), BTC, T0, end)
    pd.testing.assert_frame_equal(first, read(synthetic(1), BTC, T0, end))
    assert not first["close"].equals(read(synthetic(2), BTC, T0, end)["close"])
    eth = SeriesKey.of("binance", "ETH/USDT", "1m")
    assert not first["close"].equals(read(synthetic(1), eth, T0, end)["close"])
    assert len(first) == 360


def test_values_do_not_depend_on_range_or_chunking() -> None:
    whole = read(synthetic(3), BTC, T0 - timedelta(days=1), T0 + timedelta(days=2))
    pieces = pd.concat(
        [
            read(synthetic(3, chunk_size=97), BTC, T0 - timedelta(days=1), T0 + timedelta(hours=7, minutes=13)),
            read(synthetic(3, chunk_size=1000), BTC, T0 + timedelta(hours=7, minutes=13), T0 + timedelta(days=2)),
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(whole, pieces)
    middle = read(synthetic(3), BTC, T0 + timedelta(hours=30), T0 + timedelta(hours=31))
    pd.testing.assert_frame_equal(
        middle, whole[whole["open_time"] >= pd.Timestamp(T0 + timedelta(hours=30))].head(60).reset_index(drop=True)
    )


def test_chunks_respect_chunk_size() -> None:
    batches = list(synthetic(1, chunk_size=500).fetch_batches(BTC, T0, T0 + timedelta(minutes=1200)))
    assert [len(b.frame) for b in batches] == [500, 500, 200]
    assert all(b.rejects == () for b in batches)


@pytest.mark.parametrize("spelling", TIMEFRAMES)
def test_ohlc_invariants_and_continuity(spelling: str) -> None:
    tf = Timeframe.parse(spelling)
    key = SeriesKey.of("binance", "BTC/USDT", tf)
    end = tf.add(T0, 40) if tf.unit in ("w", "M") else tf.add(T0, 300)
    frame = read(synthetic(9), key, T0, end)
    assert len(frame) == tf.count(T0, end)
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["low"] > 0).all() and (frame["volume"] >= 0).all()
    assert not frame.isna().any().any()
    np.testing.assert_array_equal(frame["open"].to_numpy()[1:], frame["close"].to_numpy()[:-1])
    assert frame["open_time"].is_unique and frame["open_time"].is_monotonic_increasing
    assert tf.is_aligned_ns(frame["open_time"].dt.as_unit("ns").array.asi8).all()


def test_prices_are_plausible() -> None:
    frame = read(synthetic(4), BTC, T0, T0 + timedelta(days=7))
    returns = np.log(frame["close"] / frame["open"])
    assert 0.0001 < returns.std() < 0.005
    assert frame["close"].min() > 5_000 and frame["close"].max() < 500_000
    assert frame["close"].nunique() > 1000


def test_longer_timeframes_roll_up_the_1m_candles() -> None:
    minutes = read(synthetic(5), BTC, T0, T0 + timedelta(hours=3))
    hours = read(synthetic(5), SeriesKey.of("binance", "BTC/USDT", "1h"), T0, T0 + timedelta(hours=3))
    grouped = minutes.groupby(minutes["open_time"].dt.floor("1h"))
    assert hours["open"].tolist() == grouped["open"].first().tolist()
    assert hours["close"].tolist() == grouped["close"].last().tolist()
    assert hours["high"].tolist() == grouped["high"].max().tolist()
    assert hours["low"].tolist() == grouped["low"].min().tolist()
    np.testing.assert_allclose(hours["volume"], grouped["volume"].sum(), rtol=1e-9)


def test_holes_are_left_on_purpose() -> None:
    hole = (T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=30))
    full = read(synthetic(6), BTC, T0, T0 + timedelta(hours=3))
    holed = read(synthetic(6, holes=[hole]), BTC, T0, T0 + timedelta(hours=3))
    assert len(holed) == len(full) - 30
    times = holed["open_time"]
    assert not ((times >= pd.Timestamp(hole[0])) & (times < pd.Timestamp(hole[1]))).any()
    # Candles around the hole are the same candles as without it.
    pd.testing.assert_frame_equal(
        holed, full[~full["open_time"].isin(pd.date_range(*hole, freq="1min", inclusive="left"))].reset_index(drop=True)
    )


def test_holes_must_be_aware_ranges() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        SyntheticSource(1, holes=[(datetime(2024, 1, 1), datetime(2024, 1, 2))])  # noqa: DTZ001
    with pytest.raises(ValueError, match="after end"):
        SyntheticSource(1, holes=[(T0 + timedelta(hours=1), T0)])


def test_only_closed_candles() -> None:
    now = T0 + timedelta(minutes=10, seconds=5)
    frame = read(SyntheticSource(1, clock=lambda: now), BTC, T0, T0 + timedelta(hours=1))
    assert frame["open_time"].max() == pd.Timestamp(T0 + timedelta(minutes=9))
    assert (
        list(SyntheticSource(1, clock=lambda: now).fetch_batches(BTC, T0 + timedelta(hours=1), T0 + timedelta(hours=2)))
        == []
    )


def test_far_dates_work() -> None:
    old = read(synthetic(1), BTC, datetime(2017, 8, 17, tzinfo=UTC), datetime(2017, 8, 17, 1, tzinfo=UTC))
    assert len(old) == 60 and (old["close"] > 0).all()
