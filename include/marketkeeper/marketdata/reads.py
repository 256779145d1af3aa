"""How the provider reads candles for a route: a stored series as it is, a resampled timeframe built from its
base (whole, closed buckets only, also when streamed), and the complete-only filter of derived buckets. Every
read goes through the candle store's own read API."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import cast

import numpy as np
import pandas as pd

from marketkeeper.candles import EXPECTED_COUNT, SOURCE_COUNT, open_time_ns
from marketkeeper.marketdata.routing import Route
from marketkeeper.stores.base import CandleStore
from marketkeeper.tiers import resample_candles

__all__ = ["complete_only", "read_route", "route_frames"]


def complete_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The candles whose bucket is whole: derived ones with ``source_count == expected_count``; a fetched
    candle (no counts) is complete by definition."""
    if SOURCE_COUNT not in frame.columns or EXPECTED_COUNT not in frame.columns or frame.empty:
        return frame
    source = frame[SOURCE_COUNT].to_numpy(dtype=np.int64, na_value=-1)
    expected = frame[EXPECTED_COUNT].to_numpy(dtype=np.int64, na_value=-1)
    keep = (source < 0) | (expected < 0) | (source >= expected)
    return frame if bool(keep.all()) else frame.loc[keep].reset_index(drop=True)


def read_route(store: CandleStore, route: Route, start: datetime, end: datetime, *, now: datetime) -> pd.DataFrame:
    """The candles of ``route`` opening in ``[start, end)``: read, or resampled from the base (buckets closed
    before ``now``)."""
    if not route.resampled:
        return store.read(route.source, start, end)
    tf = route.key.timeframe
    base = store.read(route.source, tf.ceil(start), tf.ceil(end))
    return resample_candles(base, str(route.source.timeframe), str(tf), closed_before=now)


def route_frames(
    store: CandleStore, route: Route, start: datetime, end: datetime, *, chunk_rows: int, now: datetime
) -> Iterator[pd.DataFrame]:
    """:func:`read_route` as consecutive frames of about ``chunk_rows`` candles. A resampled timeframe holds
    back the base candles of the last bucket of each frame until the next one, so every bucket is built whole."""
    if not route.resampled:
        yield from store.iter_frames(route.source, start, end, chunk_rows=chunk_rows)
        return
    tf, base = route.key.timeframe, str(route.source.timeframe)
    carry: pd.DataFrame | None = None
    frames = cast(
        Generator[pd.DataFrame, None, None],
        store.iter_frames(route.source, tf.ceil(start), tf.ceil(end), chunk_rows=chunk_rows),
    )
    with contextlib.closing(frames):
        for frame in frames:
            if carry is not None:
                frame = pd.concat([carry, frame], ignore_index=True)
            buckets = tf.floor_ns(open_time_ns(frame))
            cut = int(np.searchsorted(buckets, buckets[-1], side="left"))
            carry = frame.iloc[cut:].reset_index(drop=True)
            if cut:
                yield resample_candles(frame.iloc[:cut], base, str(tf), closed_before=now)
    if carry is not None and len(carry):
        yield resample_candles(carry, base, str(tf), closed_before=now)
