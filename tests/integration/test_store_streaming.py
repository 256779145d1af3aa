"""The streaming read of the candle store contract (``CandleStore.iter_frames``), on every backend: frames of at
most ``chunk_rows`` that together are exactly :meth:`CandleStore.read`, whatever the names and floats."""

# ruff: noqa: F811 (the contract suite's fixtures, imported, are redefined as test arguments)
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from marketkeeper.stores.base import CandleStoreUnavailableError
from marketkeeper.timeframes import NaiveDatetimeError
from tests.integration.test_candle_store_contract import (  # noqa: F401 (fixtures)
    ALL_TIME,
    EXACT_FLOATS,
    HOSTILE_SYMBOLS,
    T0,
    Backend,
    assert_same,
    backend,
    candles,
    migrated_pg_url,
    sqlite_url,
)

pytestmark = pytest.mark.integration


def ns(frame: pd.DataFrame) -> list[int]:
    return frame["open_time"].astype("datetime64[ns, UTC]").array.asi8.tolist()


@pytest.mark.parametrize("chunk_rows", [1, 7, 25, 26, 1000])
def test_frames_hold_at_most_chunk_rows_and_join_to_the_read(backend: Backend, chunk_rows: int) -> None:
    key = backend.key()
    frame = candles(T0, 25, optional="mixed")
    backend.store.write(key, frame)

    frames = list(backend.store.iter_frames(key, *ALL_TIME, chunk_rows=chunk_rows))

    assert all(1 <= len(f) <= chunk_rows for f in frames)
    assert sum(map(len, frames)) == 25
    joined = pd.concat(frames, ignore_index=True)
    assert_same(joined, frame)
    assert joined["open_time"].is_monotonic_increasing


def test_frames_stop_at_the_range_edges(backend: Backend) -> None:
    key = backend.key()
    backend.store.write(key, candles(T0, 30))
    start, end = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)

    frames = list(backend.store.iter_frames(key, start, end, chunk_rows=4))

    times = pd.concat(frames)["open_time"]
    assert times.iloc[0] == pd.Timestamp(start) and times.iloc[-1] == pd.Timestamp(end - timedelta(minutes=1))
    assert [len(f) for f in frames] == [4, 4, 4, 3]


def test_an_empty_range_yields_no_frame_and_reads_an_empty_canonical_frame(backend: Backend) -> None:
    key = backend.key()
    backend.store.write(key, candles(T0, 3))
    later = T0 + timedelta(days=1)

    assert list(backend.store.iter_frames(key, later, later + timedelta(days=1))) == []
    assert list(backend.store.iter_frames(backend.key(), *ALL_TIME)) == []  # a series never written
    assert_same(backend.store.read(key, later, later + timedelta(days=1)), candles(T0, 0))


@pytest.mark.parametrize("optional", ["none", "quote_volume", "trade_count", "mixed"])
def test_optional_columns_missing_stream_as_nan_and_na(backend: Backend, optional: str) -> None:
    key = backend.key()
    frame = candles(T0, 12, optional=optional)
    backend.store.write(key, frame)

    assert_same(pd.concat(backend.store.iter_frames(key, *ALL_TIME, chunk_rows=5), ignore_index=True), frame)


def test_exact_floats_stream_back_bit_for_bit(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, len(EXACT_FLOATS))
    for name in ("open", "high", "low", "close", "volume", "quote_volume"):
        frame[name] = EXACT_FLOATS
    backend.store.write(key, frame)

    got = pd.concat(backend.store.iter_frames(key, *ALL_TIME, chunk_rows=3), ignore_index=True)

    for name in ("open", "high", "low", "close", "volume", "quote_volume"):
        assert got[name].to_numpy().view(np.int64).tolist() == np.array(EXACT_FLOATS).view(np.int64).tolist()


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS[:8])
def test_hostile_names_stream_only_their_own_series(backend: Backend, symbol: str) -> None:
    key = backend.key(symbol)
    neighbour = backend.key("BTC/USDT", exchange=key.exchange)
    frame = candles(T0, 9)
    backend.store.write(key, frame)
    backend.store.write(neighbour, candles(T0, 4, seed=1))

    assert_same(pd.concat(backend.store.iter_frames(key, *ALL_TIME, chunk_rows=4), ignore_index=True), frame)


def test_arguments_are_checked_when_called_not_when_iterated(backend: Backend) -> None:
    key = backend.key()
    with pytest.raises(ValueError, match="chunk_rows"):
        backend.store.iter_frames(key, *ALL_TIME, chunk_rows=0)
    with pytest.raises(NaiveDatetimeError):
        backend.store.iter_frames(key, T0.replace(tzinfo=None), T0.replace(tzinfo=None) + timedelta(days=1))


def test_closing_the_iterator_early_leaves_the_store_usable(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 40)
    backend.store.write(key, frame)

    frames = backend.store.iter_frames(key, *ALL_TIME, chunk_rows=5)
    assert len(next(frames)) == 5
    frames.close()  # type: ignore[attr-defined]

    assert_same(backend.store.read(key, *ALL_TIME), frame)
    assert backend.store.open_times(key, *ALL_TIME).tolist() == ns(frame)


def test_a_down_store_fails_the_iteration_naming_the_read(backend: Backend) -> None:
    key = backend.key()
    broken = backend.make_broken()
    try:
        frames = broken.iter_frames(key, *ALL_TIME)
        with pytest.raises(CandleStoreUnavailableError, match="read"):
            next(frames)
    finally:
        broken.close()


def test_open_times_are_the_streamed_open_times(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 50).drop(index=[3, 4, 17]).reset_index(drop=True)
    backend.store.write(key, frame)

    times = backend.store.open_times(key, *ALL_TIME)

    assert times.dtype == np.int64
    streamed = pd.concat(backend.store.iter_frames(key, *ALL_TIME, chunk_rows=6))["open_time"].array.asi8
    assert times.tolist() == streamed.tolist() == ns(frame)
    assert backend.store.open_times(key, T0 + timedelta(days=2), T0 + timedelta(days=3)).tolist() == []


AWKWARD_FLOATS = [5e-324, 1.7976931348623157e308, 0.1 + 0.2, 1.2345678901234567e-10, 1e16, 7.0, -0.0, -2.5e-300]


def parse_csv(text: bytes) -> tuple[list[str], list[list[str]]]:
    header, *lines = text.decode().split("\n")[:-1]
    return header.split(","), [line.split(",") for line in lines]


def test_write_csv_reads_back_every_double_bit_for_bit(backend: Backend) -> None:
    import io

    key = backend.key()
    n = len(AWKWARD_FLOATS)
    frame = candles(T0, n, optional="mixed")
    for j, name in enumerate(("open", "high", "low", "close", "volume", "quote_volume")):
        frame[name] = np.roll(AWKWARD_FLOATS, j)
    frame.loc[1, "quote_volume"] = np.nan
    frame.loc[2, "open_time"] += pd.Timedelta(microseconds=70)  # isoformat prints .000070
    backend.store.write(key, frame)
    stored = backend.store.read(key, *ALL_TIME)
    out = io.BytesIO()

    rows = backend.store.write_csv(key, *ALL_TIME, out)

    header, lines = parse_csv(out.getvalue())
    assert rows == len(lines) == n
    assert header == [
        "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trade_count",
        "source_count", "expected_count",
    ]  # fmt: skip
    assert [line[0] for line in lines] == [t.isoformat() for t in stored["open_time"]]
    assert lines[2][0].endswith(".000070+00:00") and lines[0][0].endswith(":00+00:00")
    for c, name in enumerate(header[1:7], start=1):
        got = np.array([np.nan if line[c] == "" else float(line[c]) for line in lines])
        assert got.view(np.int64).tolist() == stored[name].to_numpy().view(np.int64).tolist(), name
    counts = [None if line[7] == "" else int(line[7]) for line in lines]
    assert counts == [None if pd.isna(v) else int(v) for v in stored["trade_count"]]
    assert "" in [line[6] for line in lines] and None in counts  # absent values are empty fields


def test_write_csv_of_an_empty_range_is_the_header_alone(backend: Backend) -> None:
    import io

    out = io.BytesIO()
    assert backend.store.write_csv(backend.key(), *ALL_TIME, out) == 0
    header = b"open_time,open,high,low,close,volume,quote_volume,trade_count,source_count,expected_count\n"
    assert out.getvalue() == header


def test_write_csv_from_a_down_store_raises_naming_the_read(backend: Backend) -> None:
    import io

    broken = backend.make_broken()
    try:
        with pytest.raises(CandleStoreUnavailableError, match="read"):
            broken.write_csv(backend.key(), *ALL_TIME, io.BytesIO())
    finally:
        broken.close()
