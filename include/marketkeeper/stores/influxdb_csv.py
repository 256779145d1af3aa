"""The InfluxDB store's CSV export: the rows of a chunked InfluxQL answer rewritten into candle CSV as bytes,
without a DataFrame or a Python object per value.

The query asks for RFC3339 times (no ``epoch``), so a chunk's rows are
``"2024-01-01T00:00:00Z",42000.5,...,null],["2024-01-01T00:01:00Z",...``: the time a JSON string, each value a
JSON number as InfluxDB's Go encoder wrote it (its shortest round-trip text: ``float()`` of it is the very
double stored) or ``null``. Three ``bytes.replace`` over the whole chunk at once, in C, make that
``2024-01-01T00:00:00+00:00,42000.5,...,`` lines (the time as ``Timestamp.isoformat()`` in UTC, an absent value
an empty field); a time with a fraction of a second (RFC3339Nano trims trailing zeros, isoformat prints
microseconds) is rewritten by a regular expression, only in the chunks that have one. Hand-written because the
alternative, a pandas frame and ``repr`` of every float, cost several times the server's own work.
"""

from __future__ import annotations

import re
from typing import Final

from marketkeeper.influxdb.chunked import Chunk
from marketkeeper.influxdb.errors import InfluxDBError

__all__ = ["csv_rows"]

#: A chunk row's opening time: ``"2024-01-01T00:00:00Z",``, or with a fraction ``..:00.00007Z",``.
_TIME: Final = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z",')
#: A time with a fraction of a second at the start of a row (found from the row starts alone: a scan of every
#: byte for ``.`` would stop at each float).
_ANY_FRACTION: Final = re.compile(rb'\],\["[0-9T:-]{19}\.')
#: That fraction's digits (1 to 9, trailing zeros trimmed).
_FRACTION: Final = re.compile(rb'(\d\d:\d\d:\d\d)\.(\d{1,9})Z",')


def _microseconds(match: re.Match[bytes]) -> bytes:
    # isoformat shows microseconds: six digits, the nanoseconds below them cut (as numpy's microsecond text of
    # the other stores' frames cuts them).
    return match[1] + b"." + match[2][:6].ljust(6, b"0") + b'Z",'


def csv_rows(chunk: Chunk, columns: tuple[str, ...]) -> bytes:
    """The rows of ``chunk`` as candle CSV lines (each ending in a newline), in the order of ``columns``.

    :param columns: the fields the query selected, ``time`` first; the chunk must carry exactly these.
    :raises InfluxDBError: the chunk's columns or rows are not the query's (a server that answers otherwise).
    """
    if tuple(chunk.columns) != columns:
        raise InfluxDBError(
            f"InfluxQL answer has columns {chunk.columns}, expected {list(columns)}", status=None, server_message=""
        )
    rows = chunk.values
    if not rows:
        return b""
    if not _TIME.match(rows):
        raise InfluxDBError(f"InfluxQL answer has a time not in RFC3339: {rows[:40]!r}", status=None, server_message="")
    if rows[20:21] == b"." or _ANY_FRACTION.search(rows):
        rows = _FRACTION.sub(_microseconds, rows)
    # The time is the one string of a row, so `Z",` and `],["` occur only around it: every value is a number
    # or null. The first row's opening quote goes, and the last row gets its newline.
    lines = rows.replace(b'Z",', b"+00:00,").replace(b'],["', b"\n").replace(b"null", b"")
    return lines[1:] + b"\n"
