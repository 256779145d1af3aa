"""Derive coarser candles from a base series: the one pure resampling function the tiers and the API share."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import (
    CLOSE,
    EXPECTED_COUNT,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    PRICE_COLUMNS,
    QUOTE_VOLUME,
    SOURCE_COUNT,
    TRADE_COUNT,
    VOLUME,
    CandleFrameError,
    open_time_ns,
)
from marketkeeper.tiers.buckets import RESAMPLED_COLUMNS, TierBuckets, frame_of
from marketkeeper.timeframes import Timeframe, TimeframeError, to_ns

__all__ = [
    "RESAMPLED_COLUMNS",
    "TierBuckets",
    "bucket_ranges",
    "check_derivable",
    "resample_candles",
    "resample_ranges",
    "resample_tier",
]

_DAY_NS: Final = 86_400 * 10**9


@functools.lru_cache(maxsize=256)  # pure, and called for every tier of every write
def check_derivable(base: str | Timeframe, target: str | Timeframe) -> tuple[Timeframe, Timeframe]:
    """Parse ``base`` and ``target`` and check that ``target`` buckets are whole runs of ``base`` candles.

    True when ``target`` is longer than ``base`` and every ``target`` bucket boundary is a ``base`` boundary:
    ``base`` divides ``target`` (and, for ``1w``, its Monday offset); a ``1M`` bucket needs a ``base`` that
    divides a day. ``1M`` is never a base.

    :raises TimeframeError: naming both timeframes and why.
    """
    base_tf, target_tf = Timeframe.parse(base), Timeframe.parse(target)
    if not base_tf.is_fixed:
        raise TimeframeError(f"cannot derive {target_tf} from {base_tf}: a 1M base has no fixed length")
    step = base_tf.nanoseconds
    if target_tf.is_fixed:
        # The week's Monday offset from the epoch (4 days) must also fall on a base boundary.
        offset = target_tf.floor_ns(np.zeros(1, dtype=np.int64))[0]
        ok = target_tf.nanoseconds > step and target_tf.nanoseconds % step == 0 and offset % step == 0
    else:
        ok = _DAY_NS % step == 0
    if not ok:
        raise TimeframeError(
            f"cannot derive {target_tf} from {base_tf}: a {target_tf} bucket must be a whole number "
            f"(more than one) of {base_tf} candles"
        )
    return base_tf, target_tf


def resample_candles(
    frame: pd.DataFrame, base: str, target: str, *, closed_before: datetime | None = None
) -> pd.DataFrame:
    """The ``target`` candles derived from a frame of ``base`` candles, one row per non-empty closed bucket.

    ``frame`` is a candle frame in the stores' shape (:func:`marketkeeper.candles.normalize_frame`: an
    ``open_time`` column of aware UTC datetimes, float ``open``/``high``/``low``/``close``/``volume``, optional
    float ``quote_volume`` and ``Int64`` ``trade_count``), as :meth:`CandleStore.read` returns it. Its open
    times must be unique and aligned to ``base``; it need not be sorted.

    Buckets follow :mod:`marketkeeper.timeframes` (fixed timeframes from the epoch, ``1w`` from Monday 00:00
    UTC, ``1M`` calendar months). Per bucket:

    - ``open`` is the first member's open, ``close`` the last member's close, ``high`` the maximum,
      ``low`` the minimum, ``volume`` the sum;
    - ``quote_volume`` and ``trade_count`` are the sums when *every* member has one, else missing (NaN/NA):
      a partial sum would pass for a complete one;
    - ``source_count`` is how many base candles the bucket holds, ``expected_count`` how many it spans
      (e.g. 60 for 1h from 1m, 44,640 for a 31-day month from 1m). ``source_count < expected_count`` marks an
      incomplete bucket; no value is ever invented for the missing members.

    A bucket without any base candle is absent (never a zero-volume candle). With ``closed_before``, only
    buckets that closed at or before it (bucket end <= ``closed_before``) are kept; without it every bucket
    is returned, including a still-open last one. The caller chooses the frame's range: a bucket is
    complete only if the frame covers the whole bucket.

    The result has the columns :data:`RESAMPLED_COLUMNS` (``quote_volume``, ``trade_count`` always present,
    missing where unknown), sorted by ``open_time``, with a fresh ``RangeIndex``. Vectorised: one pass of
    numpy ``reduceat`` over the sorted frame.

    :param frame: the base candles.
    :param base: the frame's timeframe, e.g. ``"1m"``.
    :param target: the timeframe to derive, e.g. ``"1h"``; see :func:`check_derivable`.
    :param closed_before: an aware datetime; buckets closing after it are left out.
    :raises TimeframeError: ``target`` cannot be derived from ``base``.
    :raises CandleFrameError: a missing column, a missing price or volume, a duplicate open time, or an open
        time not aligned to ``base``.
    """
    base_tf, target_tf = check_derivable(base, target)
    return _resample(_members(frame, base_tf, derived=False), None, base_tf, target_tf, base_tf, closed_before)


def resample_ranges(
    frame: pd.DataFrame,
    source: str,
    targets: Sequence[tuple[str, datetime, datetime]],
    *,
    base: str | None = None,
    overlay: pd.DataFrame | None = None,
    closed_before: datetime | None = None,
) -> list[pd.DataFrame]:
    """For each ``(target, lo, hi)``: the ``target`` candles of the rows of ``frame`` with open times in
    ``[lo, hi)``, all from one pass over the frame's columns (what the tiers of one write need from one read).
    ``frame`` holds ``source`` candles: the base itself (as :func:`resample_candles` takes it), or with
    ``base`` a tier derived from ``base`` (as :func:`resample_tier` takes it). It is checked as a whole.

    :param overlay: more ``source`` candles, checked as ``frame`` is, that replace ``frame``'s at the same open
        times: a source tier as it will be stored, from its stored candles and the buckets just computed.
    :raises TimeframeError, CandleFrameError: as :func:`resample_candles` and :func:`resample_tier`.
    """
    buckets = bucket_ranges(frame, source, targets, base=base, overlay=overlay, closed_before=closed_before)
    return [b.frame for b in buckets]


def bucket_ranges(
    frame: pd.DataFrame,
    source: str,
    targets: Sequence[tuple[str, datetime, datetime]],
    *,
    base: str | None = None,
    overlay: pd.DataFrame | None = None,
    closed_before: datetime | None = None,
) -> list[TierBuckets]:
    """:func:`resample_ranges` with each tier's buckets as :class:`TierBuckets` (its frame built on demand):
    what a recomputation writes without building and checking a frame per tier."""
    checked = [(*check_derivable(source, target), lo, hi) for target, lo, hi in targets]
    if not checked:
        return []
    source_tf = checked[0][0]
    unit_tf = source_tf if base is None else _derived_from(frame, base, source_tf)
    members = _members(frame, source_tf, derived=base is not None)
    if overlay is not None:
        if base is not None:
            _derived_from(overlay, base, source_tf)
        members = _laid_over(members, _members(overlay, source_tf, derived=base is not None))
    return [
        TierBuckets(
            _bucket_columns(
                members, None if members is None else members.span(lo, hi), source_tf, target, unit_tf, closed_before
            )
        )
        for _, target, lo, hi in checked
    ]


def resample_tier(
    frame: pd.DataFrame, source: str, target: str, *, base: str, closed_before: datetime | None = None
) -> pd.DataFrame:
    """:func:`resample_candles` of a frame that is itself a derived tier (``source``, e.g. ``1d`` computed from
    ``base`` ``1m``): the same candles as resampling the base directly, from far fewer rows.

    ``source_count`` is the sum of the members' ``source_count`` (base candles, not ``source`` candles) and
    ``expected_count`` counts ``base`` candles; OHLC, volume and the every-member-has-it sums combine as in
    :func:`resample_candles` (a member's missing ``quote_volume`` already means one of its base candles lacked it).

    :raises CandleFrameError: as :func:`resample_candles`, or a member without ``source_count``.
    """
    source_tf, target_tf = check_derivable(source, target)
    base_tf = _derived_from(frame, base, source_tf)
    return _resample(_members(frame, source_tf, derived=True), None, source_tf, target_tf, base_tf, closed_before)


def _derived_from(frame: pd.DataFrame, base: str, source_tf: Timeframe) -> Timeframe:
    """The base timeframe of a frame of derived ``source_tf`` candles, checked: every member has a count."""
    base_tf, _ = check_derivable(base, source_tf)
    if SOURCE_COUNT not in frame.columns or (len(frame) and bool(frame[SOURCE_COUNT].isna().any())):
        raise CandleFrameError(f"cannot resample the {source_tf} tier: a candle has no {SOURCE_COUNT}")
    return base_tf


@dataclass(frozen=True)
class _Members:
    """A frame's columns as numpy arrays in open-time order, taken from the frame once (on the few rows of
    an incremental write, reaching into pandas costs more than the arithmetic)."""

    times: npt.NDArray[np.int64]
    values: dict[str, npt.NDArray[np.float64]]
    quote_volume: npt.NDArray[np.float64] | None
    trade_count: npt.NDArray[np.int64] | None
    trade_count_present: npt.NDArray[np.bool_] | None
    source_count: npt.NDArray[np.int64] | None

    def span(self, lo: datetime, hi: datetime) -> tuple[int, int]:
        """The rows with open times in ``[lo, hi)``."""
        first, last = np.searchsorted(self.times, [to_ns(lo), to_ns(hi)])
        return int(first), int(last)


def _members(frame: pd.DataFrame, base_tf: Timeframe, *, derived: bool) -> _Members | None:
    """The checked columns of ``frame`` (``None`` when it has no rows); ``derived``: with its source counts."""
    missing = [name for name in (OPEN_TIME, *PRICE_COLUMNS, VOLUME) if name not in frame.columns]
    if missing:
        raise CandleFrameError(f"cannot resample: the frame is missing column(s) {', '.join(missing)}")
    if len(frame) == 0:
        return None
    if not isinstance(frame[OPEN_TIME].dtype, pd.DatetimeTZDtype):
        raise CandleFrameError("cannot resample: open_time must be timezone-aware datetimes (UTC)")
    times = open_time_ns(frame)
    order = None if bool(np.all(times[1:] > times[:-1])) else np.argsort(times, kind="stable")
    if order is not None:
        times = times[order]
        if bool(np.any(times[1:] == times[:-1])):
            raise CandleFrameError(f"cannot resample {base_tf} candles: the frame has duplicate open times")
    if not bool(np.all(base_tf.is_aligned_ns(times))):
        raise CandleFrameError(f"cannot resample: the frame has open times not aligned to {base_tf}")

    def ordered(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return values if order is None else values[order]

    def floats(name: str) -> npt.NDArray[np.float64]:
        return ordered(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))

    trade_count = present = None
    if TRADE_COUNT in frame.columns:
        counts = pd.array(frame[TRADE_COUNT], dtype="Int64")
        trade_count = ordered(np.asarray(counts.to_numpy(dtype=np.int64, na_value=0), dtype=np.int64))
        present = ordered(~np.asarray(counts.isna(), dtype=np.bool_))
    return _Members(
        times=times,
        values={name: floats(name) for name in (*PRICE_COLUMNS, VOLUME)},
        quote_volume=floats(QUOTE_VOLUME) if QUOTE_VOLUME in frame.columns else None,
        trade_count=trade_count,
        trade_count_present=present,
        source_count=ordered(frame[SOURCE_COUNT].to_numpy(dtype=np.int64)) if derived else None,
    )


def _laid_over(under: _Members | None, over: _Members | None) -> _Members | None:
    """``under``'s rows with ``over``'s in place of those at the same open times, in open-time order."""
    if under is None or over is None:
        return over if under is None else under
    kept = ~np.isin(under.times, over.times)
    times = np.concatenate((under.times[kept], over.times))
    # The usual overlay is the newest bucket(s): the rows are in order already.
    order = None if bool(np.all(times[1:] > times[:-1])) else np.argsort(times, kind="stable")

    def joined(a: npt.NDArray[Any] | None, b: npt.NDArray[Any] | None, absent: Any) -> npt.NDArray[Any] | None:
        if a is None and b is None:
            return None
        first = np.full(len(under.times), absent) if a is None else a
        second = np.full(len(over.times), absent) if b is None else b
        out = np.concatenate((first[kept], second))
        return out if order is None else out[order]

    values = {name: joined(under.values[name], over.values[name], np.nan) for name in under.values}
    return _Members(
        times=times if order is None else times[order],
        values=cast("dict[str, npt.NDArray[np.float64]]", values),
        quote_volume=joined(under.quote_volume, over.quote_volume, np.nan),
        trade_count=joined(under.trade_count, over.trade_count, 0),
        trade_count_present=joined(under.trade_count_present, over.trade_count_present, False),
        source_count=joined(under.source_count, over.source_count, 0),
    )


def _resample(
    members: _Members | None,
    rows: tuple[int, int] | None,
    base_tf: Timeframe,
    target_tf: Timeframe,
    unit_tf: Timeframe,
    closed_before: datetime | None,
) -> pd.DataFrame:
    """The ``target_tf`` buckets of ``members``' rows ``rows`` (all of them when ``None``), as a frame."""
    return frame_of(_bucket_columns(members, rows, base_tf, target_tf, unit_tf, closed_before))


def _bucket_columns(
    members: _Members | None,
    rows: tuple[int, int] | None,
    base_tf: Timeframe,
    target_tf: Timeframe,
    unit_tf: Timeframe,
    closed_before: datetime | None,
) -> dict[str, Any] | None:
    """The columns of :func:`_resample`'s frame (``None``: no bucket), as the arrays pandas keeps."""
    if members is None:
        return None
    first, last = (0, len(members.times)) if rows is None else rows
    if last <= first:
        return None
    times = members.times[first:last]
    buckets = target_tf.floor_ns(times)
    # Sorted times give sorted buckets: each bucket is one run, starting where the bucket changes.
    starts = np.flatnonzero(np.concatenate(([True], buckets[1:] != buckets[:-1])))
    ends = np.append(starts[1:], len(times))
    opens = buckets[starts]
    closes = _bucket_ends(target_tf, opens)
    if closed_before is not None:
        n_closed = int(np.searchsorted(closes, to_ns(closed_before), side="right"))
        starts, ends, opens, closes = starts[:n_closed], ends[:n_closed], opens[:n_closed], closes[:n_closed]
        if not len(starts):
            return None
    # reduceat sums up to the next start: the arrays are cut after the last kept bucket.
    cut = slice(first, first + int(ends[-1]))

    counts = ends - starts
    values = {name: data[cut] for name, data in members.values.items()}
    for name, data in values.items():
        if bool(np.isnan(data).any()):
            raise CandleFrameError(f"cannot resample: column {name} has missing values")
    # The result's columns are built as the arrays pandas keeps (no dtype inference, no copy).
    out: dict[str, Any] = {OPEN_TIME: opens}
    out[OPEN] = values[OPEN][starts]
    out[HIGH] = np.maximum.reduceat(values[HIGH], starts)
    out[LOW] = np.minimum.reduceat(values[LOW], starts)
    out[CLOSE] = values[CLOSE][ends - 1]
    out[VOLUME] = np.add.reduceat(values[VOLUME], starts)
    out[QUOTE_VOLUME] = _complete_sum(
        None if members.quote_volume is None else members.quote_volume[cut], starts, counts
    )
    if members.trade_count is None or members.trade_count_present is None:
        out[TRADE_COUNT] = _missing_ints(len(starts))
    else:
        out[TRADE_COUNT] = _complete_count_sum(
            members.trade_count[cut], members.trade_count_present[cut], starts, counts
        )
    if members.source_count is None:
        out[SOURCE_COUNT] = _ints(counts)
    else:  # members are derived candles: count the base candles they hold
        out[SOURCE_COUNT] = _ints(np.add.reduceat(members.source_count[cut], starts))
    out[EXPECTED_COUNT] = _ints((closes - opens) // unit_tf.nanoseconds)
    return out  # the keys are RESAMPLED_COLUMNS, in order; open times as int64 nanoseconds


def _ints(values: npt.NDArray[np.integer]) -> pd.arrays.IntegerArray:
    """``values`` as a nullable Int64 array without missing values."""
    return pd.arrays.IntegerArray(values.astype(np.int64, copy=False), np.zeros(len(values), dtype=np.bool_))


def _missing_ints(n: int) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_))


def _bucket_ends(target: Timeframe, opens: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    if target.is_fixed:
        return opens + target.nanoseconds
    months = opens.view("datetime64[ns]").astype("datetime64[M]") + np.timedelta64(1, "M")
    ends: npt.NDArray[np.int64] = months.astype("datetime64[ns]").view(np.int64)
    return ends


def _complete_sum(
    values: npt.NDArray[np.float64] | None, starts: npt.NDArray[np.intp], counts: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Per-bucket sums where every member has a value (NaN elsewhere)."""
    if values is None:
        return np.full(len(starts), np.nan)
    present = ~np.isnan(values)
    sums = np.add.reduceat(np.where(present, values, 0.0), starts)
    complete = np.add.reduceat(present.astype(np.int64), starts) == counts
    return np.where(complete, sums, np.nan)


def _complete_count_sum(
    values: npt.NDArray[np.int64],
    present: npt.NDArray[np.bool_],
    starts: npt.NDArray[np.intp],
    counts: npt.NDArray[np.intp],
) -> pd.arrays.IntegerArray:
    """Per-bucket integer sums where every member has a value (NA elsewhere); int64, so counts above 2**53
    stay exact (``values`` holds 0 where a member has none)."""
    sums = np.add.reduceat(values, starts)
    complete = np.add.reduceat(present.astype(np.int64), starts) == counts
    return pd.arrays.IntegerArray(sums.astype(np.int64), ~complete)
