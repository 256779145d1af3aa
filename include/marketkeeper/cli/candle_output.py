"""``marketkeeper candles`` output as JSON or a table, written a frame at a time (CSV is the stores' own
:meth:`~marketkeeper.stores.base.CandleStore.write_csv`).

The text is what ``json.dumps`` of the whole read used to print (open times in ``isoformat``, floats by
``repr``, so every value reads back as the very double stored; an absent value is JSON ``null``), built
column-wise by :mod:`marketkeeper.stores.csv_text`, the text shared with the CSV.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, TextIO

from marketkeeper.candles import CANDLE_COLUMNS, COUNT_COLUMNS
from marketkeeper.stores.csv_text import iso_open_times, value_texts

if TYPE_CHECKING:
    import pandas as pd

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
    """A text table per frame (header on the first), or a line saying the range holds no candles.

    Each column right-aligned, one space apart, with the JSON's text of each value (every digit stored, not
    ``DataFrame.to_string``'s six decimals, which also cost a tenth of a one-day command's start-up); an absent
    value is ``NaN`` (a float) or ``<NA>`` (a count), as pandas shows them.
    """
    first = True
    for frame in frames:
        columns = [iso_open_times(frame)]
        columns += [value_texts(frame, name, "<NA>" if name in COUNT_COLUMNS else "NaN") for name in CANDLE_COLUMNS[1:]]
        widths = [max(len(name), *map(len, texts)) for name, texts in zip(CANDLE_COLUMNS, columns, strict=True)]
        row = " ".join(f"{{:>{width}}}" for width in widths).format
        lines = [row(*CANDLE_COLUMNS)] if first else []
        lines += map(row, *columns)
        out.write("\n".join(lines) + "\n")
        first = False
    if first:
        out.write("no candles in that range\n")
