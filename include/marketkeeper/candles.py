"""The candle DataFrame shape every source produces and every store reads and writes, and the series key
(defined with the column names in :mod:`marketkeeper.series`, which imports neither numpy nor pandas).

Prices and volumes are float64 here for speed; the conversion to ``Decimal`` happens at the SQL boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.series import (
    CANDLE_COLUMNS,
    CLOSE,
    COUNT_COLUMNS,
    DERIVED_COLUMNS,
    EXPECTED_COUNT,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    OPTIONAL_COLUMNS,
    PRICE_COLUMNS,
    QUOTE_VOLUME,
    REQUIRED_COLUMNS,
    SOURCE_COUNT,
    TRADE_COUNT,
    VOLUME,
    CandleFrameError,
    SeriesKey,
)

__all__ = [
    "CANDLE_COLUMNS",
    "CLOSE",
    "COUNT_COLUMNS",
    "DERIVED_COLUMNS",
    "DTYPES",
    "EXPECTED_COUNT",
    "HIGH",
    "LOW",
    "OPEN",
    "OPEN_TIME",
    "OPTIONAL_COLUMNS",
    "PRICE_COLUMNS",
    "QUOTE_VOLUME",
    "REQUIRED_COLUMNS",
    "SOURCE_COUNT",
    "TRADE_COUNT",
    "VOLUME",
    "CandleFrameError",
    "SeriesKey",
    "candle_frame",
    "empty_frame",
    "normalize_frame",
    "open_time_ns",
]

OPEN_TIME_DTYPE: Final = pd.DatetimeTZDtype(unit="ns", tz="UTC")
DTYPES: Final[dict[str, object]] = {
    OPEN_TIME: OPEN_TIME_DTYPE,
    OPEN: np.dtype("float64"),
    HIGH: np.dtype("float64"),
    LOW: np.dtype("float64"),
    CLOSE: np.dtype("float64"),
    VOLUME: np.dtype("float64"),
    QUOTE_VOLUME: np.dtype("float64"),
    TRADE_COUNT: pd.Int64Dtype(),
    SOURCE_COUNT: pd.Int64Dtype(),
    EXPECTED_COUNT: pd.Int64Dtype(),
}


def empty_frame(*, optional: bool = True) -> pd.DataFrame:
    """A candle frame without rows, with the canonical columns and dtypes (optional ones by default)."""
    columns = CANDLE_COLUMNS if optional else REQUIRED_COLUMNS
    return pd.DataFrame({name: pd.Series([], dtype=DTYPES[name]) for name in columns})


def candle_frame(
    open_times: npt.ArrayLike,
    ohlcv: Iterable[npt.ArrayLike],
    *,
    unit: str = "ns",
    quote_volume: npt.ArrayLike | None = None,
    trade_count: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """The canonical frame (see :func:`normalize_frame`) of column arrays, as a source parsed them.

    :param open_times: integer open times since the epoch, in ``unit`` (``ns``, ``ms``...).
    :param ohlcv: the open, high, low, close and volume columns, in that order (e.g. ``table.T`` of a table).
    :param quote_volume: the quote volumes; without them the frame has no such column.
    :param trade_count: the trade counts (``None`` where unknown); without them the frame has no such column.
    """
    columns: dict[str, object] = {OPEN_TIME: pd.to_datetime(open_times, unit=unit, utc=True)}
    columns.update(zip((OPEN, HIGH, LOW, CLOSE, VOLUME), ohlcv, strict=True))
    if quote_volume is not None:
        columns[QUOTE_VOLUME] = quote_volume
    if trade_count is not None:
        columns[TRADE_COUNT] = pd.array(trade_count, dtype="Int64")
    return normalize_frame(pd.DataFrame(columns))


def normalize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` as a canonical candle frame: known columns only, canonical dtypes, sorted by open time.

    ``open_time`` must be timezone-aware (any zone; it is converted to UTC): naive or numeric times are
    refused because their zone or unit would be a guess. Rows are kept as they are (NaNs, duplicates and
    all): judging them is the quality gate's job, not this function's.

    :raises CandleFrameError: naming the missing columns or the column that cannot be converted.
    """
    if _is_canonical(df):
        return df.copy(deep=False)  # already canonical (a store's read, a resample): skip the per-column work
    missing = [name for name in REQUIRED_COLUMNS if name not in df.columns]
    if missing:
        raise CandleFrameError(
            f"candle frame is missing column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out[OPEN_TIME] = _open_times(df[OPEN_TIME])
    for name in (OPEN, HIGH, LOW, CLOSE, VOLUME, QUOTE_VOLUME):
        if name in df.columns:
            out[name] = _floats(df[name], name)
    for name in COUNT_COLUMNS:
        if name in df.columns:
            out[name] = _counts(df[name], name)
    if not out[OPEN_TIME].is_monotonic_increasing:
        out = out.sort_values(OPEN_TIME, kind="stable", na_position="last", ignore_index=True)
    return out


def _is_canonical(df: pd.DataFrame) -> bool:
    """True when ``df`` is exactly what :func:`normalize_frame` would return: known columns in order, their
    canonical dtypes, a fresh ``RangeIndex`` and ascending open times."""
    columns = list(df.columns)
    if columns != [name for name in CANDLE_COLUMNS if name in columns] or not set(REQUIRED_COLUMNS) <= set(columns):
        return False
    index = df.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        return False
    # df.dtypes once: a column lookup per name costs more than the rest of the check on a small frame.
    if not all(dtype == DTYPES[name] for name, dtype in zip(columns, df.dtypes, strict=True)):
        return False
    return bool(df[OPEN_TIME].is_monotonic_increasing)


def open_time_ns(df: pd.DataFrame) -> npt.NDArray[np.int64]:
    """The ``open_time`` column of a normalized frame as int64 nanoseconds since the epoch."""
    # On the array rather than through the .dt accessor: the same values, a quarter of the cost (it is
    # called several times for every small frame a derived tier's incremental write passes).
    values: npt.NDArray[np.int64] = df[OPEN_TIME].array.as_unit("ns").asi8
    return values


def _open_times(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.as_unit("ns").reset_index(drop=True)
    if pd.api.types.is_datetime64_dtype(column.dtype):
        raise CandleFrameError("open_time is naive (no timezone); localize it to UTC first")
    if pd.api.types.is_numeric_dtype(column.dtype) and len(column):
        raise CandleFrameError(
            "open_time is numeric; convert it with pd.to_datetime(values, unit='ms' or 'us', utc=True) first"
        )
    values = column.reset_index(drop=True)
    try:
        # Element by element (a slow path only object columns take): a naive value anywhere is refused.
        naive = any(pd.Timestamp(v).tzinfo is None for v in values if v is not None and not pd.isna(v))
        converted = pd.to_datetime(values, utc=True).dt.as_unit("ns")
    except (ValueError, TypeError) as exc:
        raise CandleFrameError(f"open_time cannot be read as datetimes: {exc}") from exc
    if naive:
        raise CandleFrameError("open_time values are naive (no timezone); localize them to UTC first")
    return converted


def _floats(column: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_numeric(column.reset_index(drop=True), errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise CandleFrameError(f"column {name} cannot be read as numbers: {exc}") from exc


def _counts(column: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_numeric(column.reset_index(drop=True), errors="raise").astype("Int64")
    except (ValueError, TypeError, OverflowError) as exc:
        raise CandleFrameError(f"column {name} cannot be read as whole numbers: {exc}") from exc
