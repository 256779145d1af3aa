"""Candle frames as text, the one definition that :meth:`CandleStore.write_csv
<marketkeeper.stores.base.CandleStore.write_csv>` and ``marketkeeper candles`` share.

Open times print as ``Timestamp.isoformat()`` in UTC (``2024-01-01T00:00:00+00:00``, ``.ffffff`` only when there
are microseconds), floats by ``repr`` (the shortest text that reads back as the very double stored), trade counts
as integers; an absent value is whatever the format uses (an empty CSV field, JSON ``null``). Built column-wise:
open times by numpy, floats by ``repr`` over plain lists, rows joined once per frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from marketkeeper.series import CANDLE_COLUMNS, COUNT_COLUMNS, OPEN_TIME

if TYPE_CHECKING:
    # Imported by the functions over frames: the stores' own CSV exports need only the header.
    import pandas as pd

__all__ = ["CSV_HEADER", "csv_lines", "iso_open_times", "value_texts"]

#: The first line of a candle CSV: every candle column, in order.
CSV_HEADER: Final = ",".join(CANDLE_COLUMNS) + "\n"


def iso_open_times(frame: pd.DataFrame) -> list[str]:
    """``Timestamp.isoformat()`` of every open time (UTC): seconds, plus microseconds where there are some."""
    import numpy as np

    ns = frame[OPEN_TIME].array.asi8
    text = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[s]"), unit="s").astype(object)
    fraction = np.flatnonzero(ns % 1_000_000_000)
    if len(fraction):
        text[fraction] = np.datetime_as_string(ns[fraction].astype("datetime64[ns]"), unit="us")
    return [t + "+00:00" for t in text.tolist()]


def value_texts(frame: pd.DataFrame, name: str, missing: str) -> list[str]:
    """The column ``name`` (a float column or a count column) as text, ``missing`` where a candle has none."""
    import numpy as np

    if name in COUNT_COLUMNS:
        counts = frame[name].array
        absent = np.asarray(counts.isna(), dtype=np.bool_)
        out = list(map(str, counts.to_numpy(dtype=np.int64, na_value=0).tolist()))
    else:
        values = frame[name].to_numpy(dtype=np.float64)
        absent = np.isnan(values)
        # repr is the shortest text that reads back as the same double (what pandas and json print).
        out = list(map(repr, values.tolist()))
    for i in np.flatnonzero(absent).tolist():
        out[i] = missing
    return out


def csv_lines(frame: pd.DataFrame) -> str:
    """The CSV lines of a canonical frame, each ending in a newline (columns as :data:`CSV_HEADER`)."""
    if not len(frame):
        return ""
    columns = [iso_open_times(frame), *(value_texts(frame, name, "") for name in CANDLE_COLUMNS[1:])]
    return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"
