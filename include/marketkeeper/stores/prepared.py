"""The write side every candle store shares: a frame checked and turned into numpy arrays once
(:func:`prepare_candles`), which each backend then formats its own way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import (
    DERIVED_COLUMNS,
    QUOTE_VOLUME,
    TRADE_COUNT,
    CandleFrameError,
    SeriesKey,
    normalize_frame,
    open_time_ns,
)
from marketkeeper.series import VALUE_COLUMNS
from marketkeeper.stores.errors import CandleStoreError

__all__ = ["VALUE_COLUMNS", "PreparedCandles", "prepare_candles", "prepared_from_arrays"]

_NAT: Final = np.iinfo(np.int64).min


@dataclass(frozen=True)
class PreparedCandles:
    """A validated write: the open times and values of one series as numpy arrays, sorted and unique.

    ``quote_volume`` is ``None`` when the frame had no such column; inside it NaN means "absent for this
    candle". ``trade_count`` likewise, with ``trade_count_present`` marking the candles that have one.
    ``derived`` holds the derived tiers' ``source_count``/``expected_count`` columns the frame had, -1 where a
    candle has none (counts are never negative).
    """

    key: SeriesKey
    times_ns: npt.NDArray[np.int64]
    values: dict[str, npt.NDArray[np.float64]]
    quote_volume: npt.NDArray[np.float64] | None
    trade_count: npt.NDArray[np.int64] | None
    trade_count_present: npt.NDArray[np.bool_] | None
    derived: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times_ns)

    @property
    def start(self) -> datetime:
        """The first open time (the frame must not be empty)."""
        return pd.Timestamp(int(self.times_ns[0]), tz="UTC").to_pydatetime()

    @property
    def end(self) -> datetime:
        """Just after the last open time: the written range is ``[start, end)``."""
        return pd.Timestamp(int(self.times_ns[-1]) + 1000, tz="UTC").to_pydatetime()

    @property
    def quote_volume_present(self) -> npt.NDArray[np.bool_] | None:
        return None if self.quote_volume is None else ~np.isnan(self.quote_volume)


def prepare_candles(key: SeriesKey, frame: pd.DataFrame, *, store: str) -> PreparedCandles:
    """Normalize ``frame`` and check it can be stored exactly: the checks every backend shares.

    Judging candles (high >= low, alignment...) is the quality gate's job; these checks only refuse what
    no store can keep faithfully: non-finite prices or volumes, two candles at one open time, open times
    finer than microseconds.

    :param key: the series the candles belong to.
    :param frame: a candle frame (see :func:`~marketkeeper.candles.normalize_frame`).
    :param store: the store's name, for error messages.
    :raises CandleStoreError: naming the offending column or open time.
    """

    def refuse(cause: str) -> CandleStoreError:
        return CandleStoreError(cause, store=store, operation="write", key=key)

    if not isinstance(key, SeriesKey):
        raise TypeError(f"key must be a SeriesKey, got {type(key).__name__}: {key!r}")
    try:
        df = normalize_frame(frame)
    except CandleFrameError as exc:
        raise refuse(str(exc)) from exc
    values = {name: df[name].to_numpy(dtype=np.float64) for name in VALUE_COLUMNS}
    quote_volume = df[QUOTE_VOLUME].to_numpy(dtype=np.float64) if QUOTE_VOLUME in df.columns else None
    trade_count = present = None
    if TRADE_COUNT in df.columns:
        counts = df[TRADE_COUNT].array
        present = ~np.asarray(counts.isna(), dtype=np.bool_)
        trade_count = np.asarray(counts.to_numpy(dtype=np.int64, na_value=0), dtype=np.int64)
    derived: dict[str, npt.NDArray[np.int64]] = {}
    for name in DERIVED_COLUMNS:
        if name in df.columns:
            counts = df[name].array
            column = np.asarray(counts.to_numpy(dtype=np.int64, na_value=-1), dtype=np.int64)
            if (~np.asarray(counts.isna(), dtype=np.bool_) & (column < 0)).any():
                raise refuse(f"column {name} has negative values")
            derived[name] = column
    return prepared_from_arrays(
        key,
        open_time_ns(df),
        values,
        quote_volume=quote_volume,
        trade_count=trade_count,
        trade_count_present=present,
        derived=derived,
        store=store,
    )


def prepared_from_arrays(
    key: SeriesKey,
    times_ns: npt.NDArray[np.int64],
    values: dict[str, npt.NDArray[np.float64]],
    *,
    quote_volume: npt.NDArray[np.float64] | None = None,
    trade_count: npt.NDArray[np.int64] | None = None,
    trade_count_present: npt.NDArray[np.bool_] | None = None,
    derived: dict[str, npt.NDArray[np.int64]] | None = None,
    store: str,
) -> PreparedCandles:
    """A write of columns already in :class:`PreparedCandles`' form (open times ascending), checked as
    :func:`prepare_candles` checks a frame's: what a derived tier's buckets take instead of a frame.

    :raises CandleStoreError: naming the offending column or open time.
    """

    def refuse(cause: str) -> CandleStoreError:
        return CandleStoreError(cause, store=store, operation="write", key=key)

    times = times_ns
    if (times == _NAT).any():  # NaT is int64's minimum (a numpy test, cheaper than the column's isna)
        raise refuse("open_time has missing values")
    if len(times) > 1:
        steps = times[1:] - times[:-1]
        if (steps < 0).any():
            raise refuse("open_time is not in ascending order")
        repeated = steps == 0
        if repeated.any():
            first = pd.Timestamp(int(times[1:][repeated][0]), tz="UTC")
            raise refuse(f"two candles share open_time {first.isoformat()}; deduplicate before writing")
    if (times % 1000 != 0).any():
        raise refuse("open_time has sub-microsecond parts, which the stores cannot all keep")
    for name in VALUE_COLUMNS:
        if not np.isfinite(values[name]).all():
            raise refuse(f"column {name} has NaN or infinite values; only finite numbers can be stored")
    if quote_volume is not None and np.isinf(quote_volume).any():
        raise refuse(f"column {QUOTE_VOLUME} has infinite values")
    for name, column in (derived or {}).items():
        if (column < -1).any():
            raise refuse(f"column {name} has negative values")
    return PreparedCandles(key, times, values, quote_volume, trade_count, trade_count_present, dict(derived or {}))
