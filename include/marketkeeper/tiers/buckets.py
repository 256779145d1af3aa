"""A derived tier's buckets as the column arrays :mod:`marketkeeper.tiers.resample` computes them: a frame is
built from them only when asked for, and a store write takes them as they are (no frame built, then taken apart
and checked again, for each tier of an incremental recomputation)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from marketkeeper.candles import (
    CLOSE,
    EXPECTED_COUNT,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    OPEN_TIME_DTYPE,
    QUOTE_VOLUME,
    SOURCE_COUNT,
    TRADE_COUNT,
    VOLUME,
    SeriesKey,
)

if TYPE_CHECKING:
    from marketkeeper.stores.prepared import PreparedCandles

__all__ = ["RESAMPLED_COLUMNS", "TierBuckets", "empty_tier", "frame_of"]

#: The columns of :func:`~marketkeeper.tiers.resample.resample_candles`' result, in order.
RESAMPLED_COLUMNS: Final = (
    OPEN_TIME, OPEN, HIGH, LOW, CLOSE, VOLUME, QUOTE_VOLUME, TRADE_COUNT, SOURCE_COUNT, EXPECTED_COUNT
)  # fmt: skip
_VALUES: Final = (OPEN, HIGH, LOW, CLOSE, VOLUME)


def frame_of(columns: dict[str, Any] | None) -> pd.DataFrame:
    """The canonical frame of bucket columns (open times as int64 nanoseconds); ``None``: no bucket."""
    if columns is None:
        return empty_tier()
    times = pd.DatetimeIndex(columns[OPEN_TIME].view("datetime64[ns]")).tz_localize("UTC").array
    return pd.DataFrame({**columns, OPEN_TIME: times}, copy=False)


@dataclass(frozen=True)
class TierBuckets:
    """One tier's buckets from :func:`bucket_ranges`, as the column arrays they were computed in: a frame
    (:attr:`frame`) is built only when asked for, and a store write takes them as they are (:meth:`prepared`).
    """

    columns: dict[str, Any] | None

    def __len__(self) -> int:
        return 0 if self.columns is None else len(self.columns[OPEN_TIME])

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        """The buckets as a canonical frame (the columns of :data:`RESAMPLED_COLUMNS`)."""
        return frame_of(self.columns)

    def incomplete(self) -> int:
        """How many buckets hold fewer base candles than they span."""
        if self.columns is None:
            return 0
        source, expected = self.columns[SOURCE_COUNT], self.columns[EXPECTED_COUNT]
        return int((source.to_numpy(dtype=np.int64) < expected.to_numpy(dtype=np.int64)).sum())

    def prepared(self, key: SeriesKey, *, store: str) -> PreparedCandles:
        """The buckets as a store write of series ``key``, checked as any write is but without a frame."""
        from marketkeeper.stores.prepared import prepare_candles, prepared_from_arrays

        if self.columns is None:
            return prepare_candles(key, empty_tier(), store=store)  # no bucket: nothing is written
        c = self.columns
        trade_count = c[TRADE_COUNT]
        return prepared_from_arrays(
            key,
            c[OPEN_TIME],
            {name: c[name] for name in _VALUES},
            quote_volume=c[QUOTE_VOLUME],
            trade_count=trade_count.to_numpy(dtype=np.int64, na_value=0),
            trade_count_present=~np.asarray(trade_count.isna(), dtype=np.bool_),
            derived={name: c[name].to_numpy(dtype=np.int64, na_value=-1) for name in (SOURCE_COUNT, EXPECTED_COUNT)},
            store=store,
        )


def empty_tier() -> pd.DataFrame:
    """A resampled frame without buckets (every column, its dtype)."""
    dtypes: dict[str, object] = {name: np.dtype("float64") for name in RESAMPLED_COLUMNS}
    dtypes.update({OPEN_TIME: OPEN_TIME_DTYPE, TRADE_COUNT: "Int64", SOURCE_COUNT: "Int64", EXPECTED_COUNT: "Int64"})
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})
