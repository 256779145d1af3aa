"""``marketkeeper candles`` output: canonical candle frames as CSV, JSON or a table, written a frame at a time.

The text is what ``DataFrame.to_csv`` and ``json.dumps`` of the whole read used to print (open times in
``isoformat``, floats by ``repr``, so every value reads back as the very double stored; an absent value is an
empty CSV field or JSON ``null``), built column-wise: open times by numpy, floats by ``repr`` over plain
lists, rows joined once per frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TextIO

import numpy as np
import pandas as pd

from marketkeeper.candles import CANDLE_COLUMNS, OPEN_TIME, TRADE_COUNT

__all__ = ["write_csv", "write_json", "write_table"]

_FLOATS: Final = tuple(name for name in CANDLE_COLUMNS if name not in (OPEN_TIME, TRADE_COUNT))
_JSON_ROW: Final = "{{" + ", ".join(f'"{name}": {{}}' for name in CANDLE_COLUMNS) + "}}"


def _iso_times(frame: pd.DataFrame) -> list[str]:
    """``Timestamp.isoformat()`` of every open time (UTC): seconds, plus microseconds where there are some."""
    ns = frame[OPEN_TIME].array.asi8
    text = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[s]"), unit="s").astype(object)
    fraction = np.flatnonzero(ns % 1_000_000_000)
    if len(fraction):
        text[fraction] = np.datetime_as_string(ns[fraction].astype("datetime64[ns]"), unit="us")
    return [t + "+00:00" for t in text.tolist()]


def _texts(frame: pd.DataFrame, name: str, missing: str) -> list[str]:
    if name == TRADE_COUNT:
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


def _columns(frame: pd.DataFrame, missing: str, *, quote_times: bool = False) -> list[list[str]]:
    times = _iso_times(frame)
    if quote_times:
        times = ['"' + t + '"' for t in times]
    return [times, *(_texts(frame, name, missing) for name in (*_FLOATS, TRADE_COUNT))]


def write_csv(frames: Iterable[pd.DataFrame], out: TextIO) -> None:
    """A header line, then one line per candle."""
    out.write(",".join(CANDLE_COLUMNS) + "\n")
    for frame in frames:
        out.write("\n".join(map(",".join, zip(*_columns(frame, ""), strict=True))) + "\n")


def write_json(frames: Iterable[pd.DataFrame], out: TextIO) -> None:
    """One JSON array of objects (``json.dumps`` spacing), streamed: ``[`` first, ``]`` after the last frame."""
    out.write("[")
    first = True
    for frame in frames:
        if not first:
            out.write(", ")
        out.write(", ".join(map(_JSON_ROW.format, *_columns(frame, "null", quote_times=True))))
        first = False
    out.write("]\n")


def write_table(frames: Iterable[pd.DataFrame], out: TextIO) -> None:
    """A text table per frame (header on the first), or a line saying the range holds no candles."""
    first = True
    for frame in frames:
        shown = frame.assign(**{OPEN_TIME: _iso_times(frame)})
        out.write(shown.to_string(index=False, header=first) + "\n")
        first = False
    if first:
        out.write("no candles in that range\n")
