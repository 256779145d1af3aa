"""The canonical frame a store read returns, built from a backend's column arrays (numpy and pandas are
imported here, not by :mod:`marketkeeper.stores.base`: a CSV export never builds a frame)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import DERIVED_COLUMNS, OPEN_TIME, QUOTE_VOLUME, TRADE_COUNT
from marketkeeper.series import VALUE_COLUMNS

__all__ = ["empty_read", "frame_from_columns"]


def frame_from_columns(
    times_ns: npt.ArrayLike,
    values: dict[str, npt.ArrayLike],
    *,
    quote_volume: npt.ArrayLike | None = None,
    trade_count: pd.api.extensions.ExtensionArray | list[int | None] | None = None,
    derived: Mapping[str, npt.ArrayLike] | None = None,
) -> pd.DataFrame:
    """Build the canonical frame a read returns: every candle column, open times in UTC, ascending.

    :param times_ns: open times as int64 nanoseconds since the epoch, ascending.
    :param values: the :data:`VALUE_COLUMNS` as float arrays.
    :param quote_volume: floats with NaN where absent, or ``None`` when no candle has one.
    :param trade_count: integers with ``None``/NA where absent, or ``None`` when no candle has one.
    :param derived: ``source_count``/``expected_count`` as integers, -1 or ``None`` where absent; a column left
        out is absent for every candle.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    n = len(times)
    # One DataFrame of ready columns: assigning them one by one to a frame cost three times as much, which
    # the many small reads of a derived tier's incremental write pay on every call.
    columns: dict[str, Any] = {OPEN_TIME: pd.DatetimeIndex(times.view("datetime64[ns]"), tz="UTC").array}
    for name in VALUE_COLUMNS:
        columns[name] = np.asarray(values[name], dtype=np.float64)
    columns[QUOTE_VOLUME] = np.full(n, np.nan) if quote_volume is None else np.asarray(quote_volume, dtype=np.float64)
    columns[TRADE_COUNT] = pd.array([None] * n if trade_count is None else trade_count, dtype="Int64")
    for name in DERIVED_COLUMNS:
        column = (derived or {}).get(name)
        if column is None:
            columns[name] = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_))
        elif isinstance(column, np.ndarray) and column.dtype.kind == "i":
            columns[name] = pd.arrays.IntegerArray(column.astype(np.int64, copy=False), column == -1)
        else:
            counts = pd.array(column, dtype="Int64")
            counts[counts == -1] = pd.NA
            columns[name] = counts
    return pd.DataFrame(columns, copy=False)


def empty_read() -> pd.DataFrame:
    """The canonical frame of a read that found no candle."""
    return frame_from_columns(np.empty(0, dtype=np.int64), {name: [] for name in VALUE_COLUMNS})
