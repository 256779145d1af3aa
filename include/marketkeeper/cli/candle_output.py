"""``marketkeeper candles`` output as JSON or a table, written a frame at a time (CSV is the stores' own
:meth:`~marketkeeper.stores.base.CandleStore.write_csv`).

The text is what ``json.dumps`` of the whole read used to print (open times in ``isoformat``, floats by
``repr``, so every value reads back as the very double stored; an absent value is JSON ``null``), built
column-wise by :mod:`marketkeeper.stores.csv_text`, the text shared with the CSV.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TextIO

import pandas as pd

from marketkeeper.candles import CANDLE_COLUMNS, OPEN_TIME
from marketkeeper.stores.csv_text import iso_open_times, value_texts

__all__ = ["write_json", "write_table"]

_JSON_ROW: Final = "{{" + ", ".join(f'"{name}": {{}}' for name in CANDLE_COLUMNS) + "}}"


def write_json(frames: Iterable[pd.DataFrame], out: TextIO) -> None:
    """One JSON array of objects (``json.dumps`` spacing), streamed: ``[`` first, ``]`` after the last frame."""
    out.write("[")
    first = True
    for frame in frames:
        if not first:
            out.write(", ")
        times = ['"' + t + '"' for t in iso_open_times(frame)]
        values = (value_texts(frame, name, "null") for name in CANDLE_COLUMNS[1:])
        out.write(", ".join(map(_JSON_ROW.format, times, *values)))
        first = False
    out.write("]\n")


def write_table(frames: Iterable[pd.DataFrame], out: TextIO) -> None:
    """A text table per frame (header on the first), or a line saying the range holds no candles."""
    first = True
    for frame in frames:
        shown = frame.assign(**{OPEN_TIME: iso_open_times(frame)})
        out.write(shown.to_string(index=False, header=first) + "\n")
        first = False
    if first:
        out.write("no candles in that range\n")
