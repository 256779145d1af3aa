"""Vectorized gap detection: the runs of missing candles ``[start, end)`` in a series over a window.

Open times are mapped to candle indices (integer nanosecond arithmetic for fixed timeframes, calendar month
numbers for ``1M``) and the holes are read off the differences of consecutive indices; no Python loop runs
over candles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.timeframes import Timeframe, check_range, ensure_utc, to_ns

__all__ = ["Gap", "GapArrays", "detection_window", "find_gap_arrays", "find_gaps"]

_NS_PER_US: Final = 1000


class Gap(NamedTuple):
    """A run of ``missing`` candles whose open times lie in ``[start, end)``; ``end`` is the next present open.

    A named tuple rather than a dataclass: a detection over a long series can return 100,000 of them.
    """

    start: datetime
    end: datetime
    missing: int

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()}) {self.missing} missing"


@dataclass(frozen=True)
class GapArrays:
    """The gaps as parallel int64 arrays (nanoseconds since the epoch; counts), for callers that stay in numpy."""

    starts_ns: npt.NDArray[np.int64]
    ends_ns: npt.NDArray[np.int64]
    missing: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.missing)

    @property
    def total_missing(self) -> int:
        return int(self.missing.sum())

    def to_list(self) -> list[Gap]:
        # pandas converts nanoseconds to aware datetimes in one C loop, far faster than timedelta arithmetic.
        starts = pd.DatetimeIndex(self.starts_ns, tz=UTC).to_pydatetime().tolist()
        ends = pd.DatetimeIndex(self.ends_ns, tz=UTC).to_pydatetime().tolist()
        return list(map(Gap._make, zip(starts, ends, self.missing.tolist(), strict=True)))


def detection_window(
    timeframe: Timeframe | str, *, now: datetime, first: datetime, start: datetime | None = None
) -> tuple[datetime, datetime]:
    """The window a series is checked over: from ``start`` (or ``first``) to just after the last closed candle.

    :param timeframe: the series' timeframe.
    :param now: the current time; the candle still open at ``now`` is not expected yet.
    :param first: the market's first time to keep (its ``first_date``) or the series' first stored candle.
    :param start: an explicit start that overrides ``first`` (e.g. a CLI ``--start``); never before ``first``
        is not enforced, because a user may ask about history older than the declaration.
    :returns: ``(window_start, window_end)``, both aligned, ``window_end`` exclusive; empty when nothing closed.
    """
    tf = Timeframe.parse(timeframe)
    begin = tf.ceil(ensure_utc(start if start is not None else first, "start"))
    end = tf.floor(ensure_utc(now, "now"))
    return begin, max(begin, end)


def _indices(tf: Timeframe, times_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Candle numbers of aligned open times: epoch-relative steps, or months since 1970-01 for ``1M``."""
    if tf.unit == "M":
        return times_ns.view("datetime64[ns]").astype("datetime64[M]").view(np.int64)
    return (times_ns - tf.floor_ns(np.zeros(1, dtype=np.int64))[0]) // tf.nanoseconds


def _open_times(tf: Timeframe, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    if tf.unit == "M":
        return indices.view("datetime64[M]").astype("datetime64[ns]").view(np.int64)
    return tf.floor_ns(np.zeros(1, dtype=np.int64))[0] + indices * tf.nanoseconds


def _fixed_sorted(times: npt.NDArray[np.int64], tf: Timeframe, first_ns: int, stop_ns: int) -> GapArrays | None:
    """The common case in a few passes: strictly ascending, aligned times of a fixed timeframe.

    Only the differences that are not exactly one candle are examined further, so the costly integer
    division runs on the breaks alone. Returns ``None`` when the input is unsorted, repeated or misaligned.
    """
    step = tf.nanoseconds
    empty = np.zeros(0, dtype=np.int64)
    if stop_ns <= first_ns:
        return GapArrays(empty, empty.copy(), empty.copy())
    diffs = np.diff(times)
    breaks = np.flatnonzero(diffs != step)
    if not bool((diffs[breaks] > 0).all()):
        return None
    lo, hi = (int(i) for i in np.searchsorted(times, [first_ns, stop_ns]))
    if lo == hi:
        whole = np.array([first_ns], dtype=np.int64)
        return GapArrays(whole, np.array([stop_ns], dtype=np.int64), np.array([(stop_ns - first_ns) // step]))
    origin = int(tf.floor_ns(np.zeros(1, dtype=np.int64))[0])
    inside = breaks[(breaks >= lo) & (breaks < hi - 1)]
    jumps = diffs[inside]
    if (int(times[lo]) - origin) % step or bool((jumps % step).any()):
        return None
    starts = [times[inside] + step]
    ends = [times[inside + 1]]
    if int(times[lo]) > first_ns:
        starts.insert(0, np.array([first_ns], dtype=np.int64))
        ends.insert(0, times[lo : lo + 1])
    after_last = int(times[hi - 1]) + step
    if after_last < stop_ns:
        starts.append(np.array([after_last], dtype=np.int64))
        ends.append(np.array([stop_ns], dtype=np.int64))
    gap_starts, gap_ends = np.concatenate(starts), np.concatenate(ends)
    return GapArrays(gap_starts, gap_ends, (gap_ends - gap_starts) // step)


def find_gap_arrays(
    open_times_ns: npt.ArrayLike, timeframe: Timeframe | str, start: datetime, end: datetime
) -> GapArrays:
    """Like :func:`find_gaps`, returning numpy arrays (no per-gap Python objects)."""
    tf = Timeframe.parse(timeframe)
    start, end = check_range(start, end)
    times = np.asarray(open_times_ns)
    if times.dtype.kind == "M":
        times = times.astype("datetime64[ns]").view(np.int64)
    times = times.astype(np.int64, copy=False)
    if tf.is_fixed:
        fast = _fixed_sorted(times, tf, to_ns(tf.ceil(start)), to_ns(tf.ceil(end)))
        if fast is not None:
            return fast
    first_index = int(_indices(tf, np.array([to_ns(tf.ceil(start))], dtype=np.int64))[0])
    stop_index = int(_indices(tf, np.array([to_ns(tf.ceil(end))], dtype=np.int64))[0])
    if stop_index <= first_index:
        empty = np.zeros(0, dtype=np.int64)
        return GapArrays(empty, empty.copy(), empty.copy())
    # Misaligned or out-of-window times cannot fill a slot of the window, so they are ignored (the quality
    # gate keeps them out of the stores; detection must not fail on a store that has some anyway).
    idx = _indices(tf, times[tf.is_aligned_ns(times)])
    idx = idx[(idx >= first_index) & (idx < stop_index)]
    if len(idx) > 1 and not bool((idx[1:] > idx[:-1]).all()):
        idx = np.unique(idx)
    # Sentinels just outside the window turn holes at either edge into ordinary holes between neighbours.
    present = np.concatenate(([first_index - 1], idx, [stop_index]))
    step = np.diff(present)
    where = np.flatnonzero(step > 1)
    gap_first = present[where] + 1
    gap_stop = present[where + 1]
    return GapArrays(_open_times(tf, gap_first), _open_times(tf, gap_stop), (gap_stop - gap_first).astype(np.int64))


def find_gaps(open_times_ns: npt.ArrayLike, timeframe: Timeframe | str, start: datetime, end: datetime) -> list[Gap]:
    """The missing candles of a series in ``[start, end)`` as maximal runs, ascending.

    :param open_times_ns: the series' open times as int64 nanoseconds since the epoch (or ``datetime64``),
        in any order, duplicates allowed; times not aligned to ``timeframe`` or outside the window are ignored.
    :param timeframe: the series' timeframe; ``1w`` is Monday-aligned, ``1M`` calendar months.
    :param start: the window's start (rounded up to an open time).
    :param end: the window's end, exclusive (see :func:`detection_window`).
    :raises InvalidRangeError: ``start`` is after ``end``.
    :raises NaiveDatetimeError: ``start`` or ``end`` has no timezone.
    """
    return find_gap_arrays(open_times_ns, timeframe, start, end).to_list()
