"""The SQL store's CSV export on PostgreSQL: one ``COPY (SELECT ..) TO STDOUT (FORMAT csv)`` whose bytes are
streamed to the output with the open times rewritten into isoformat, importing neither numpy nor pandas
(``marketkeeper candles --format csv`` pays for the drivers alone).

Nothing from the input reaches the statement's text: the columns are constants, the series and range bound by
psycopg.
"""

from __future__ import annotations

import re
import select
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO, Final

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketkeeper.series import CANDLE_COLUMNS, SeriesKey
from marketkeeper.stores.csv_text import CSV_HEADER

__all__ = ["copy_csv"]


# Every candle column in the order of CANDLE_COLUMNS (so the CSV header names them): constants, no input. The
# open time goes out as PostgreSQL's own text, which the client turns into isoformat (see _isoformat_times).
_COPY_CSV_OUT: Final = (
    f"COPY (SELECT {', '.join(CANDLE_COLUMNS)} FROM candles "  # noqa: S608
    "WHERE exchange = %s AND symbol = %s AND timeframe = %s AND open_time >= %s AND open_time < %s "
    "ORDER BY open_time) TO STDOUT (FORMAT csv)"
)
#: A UTC timestamptz as PostgreSQL prints it with TimeZone UTC and DateStyle ISO, ending the first CSV field.
_PG_TIME: Final = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00,")
#: Its fraction of a second, which PostgreSQL cuts after the last non-zero digit and isoformat prints as six.
_FRACTION: Final = re.compile(rb" (\d\d:\d\d:\d\d)\.(\d{1,6})\+00,")
#: A line after the first whose open time has a fraction of a second (found from the line starts alone: a
#: scan of every byte for ``.`` would stop at each float).
_LATER_FRACTION: Final = re.compile(rb"\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.")


def _six_digits(match: re.Match[bytes]) -> bytes:
    return b" " + match[1] + b"." + match[2].ljust(6, b"0") + b"+00,"


def _isoformat_times(lines: bytearray) -> bytearray:
    """Whole CSV lines of candles with their first field, PostgreSQL's ``2024-01-01 00:00:00+00``, rewritten as
    ``Timestamp.isoformat()`` (``2024-01-01T00:00:00+00:00``, ``.ffffff`` when there are microseconds).

    Done here, a buffer at a time in C (re, bytes.replace), because any SQL expression over the open time
    (to_char, replace, a CASE) costs PostgreSQL more than the rest of the row, and the server is what a COPY
    waits on; the client has cores to spare meanwhile. A space and ``+00,`` occur nowhere else in a candle line:
    the other fields are numbers (PostgreSQL writes no exponent below 5 in magnitude, so never ``e+00``),
    ``NaN``, ``Infinity`` or empty.
    """
    if not lines:
        return bytearray()
    if not _PG_TIME.match(lines):
        raise psycopg.DataError(f"COPY sent an open time not in PostgreSQL's ISO UTC form: {bytes(lines[:40])!r}")
    if _has_fraction(lines):
        lines = bytearray(_FRACTION.sub(_six_digits, lines))
    return lines.replace(b" ", b"T").replace(b"+00,", b"+00:00,")


def _has_fraction(lines: bytearray) -> bool:
    """Whether an open time of these lines has a fraction of a second: its 20th byte is ``.``, not ``+``."""
    return lines[19:20] == b"." or _LATER_FRACTION.search(lines) is not None


#: Bytes of CSV gathered before each write to ``out`` (PostgreSQL sends one message per row).
_CSV_FLUSH: Final = 1 << 20


def copy_csv(conn: Connection, key: SeriesKey, start: datetime, end: datetime, out: BinaryIO) -> int:
    """Stream the candles of ``key`` in ``[start, end)`` to ``out`` as CSV formatted by PostgreSQL (header
    :data:`~marketkeeper.stores.csv_text.CSV_HEADER`) and return how many rows it sent.

    ``extra_float_digits = 3`` (``SET LOCAL``, in ``conn``'s transaction) makes PostgreSQL >= 12 print each float8
    in its shortest round-trip form, so ``float()`` of the text is the very double stored (``7`` rather than
    Python's ``7.0``, ``1e+16``); NULL is an empty field. ``TimeZone = 'UTC'`` and ``DateStyle = 'ISO'`` fix
    the open times' text, which :func:`_isoformat_times` rewrites into isoformat. Memory stays at one
    ``_CSV_FLUSH`` buffer.
    """
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, got {type(driver).__name__}")
    if driver.info.server_version < 120000:
        raise psycopg.NotSupportedError("exact float text needs PostgreSQL 12 or later")
    for setting in ("extra_float_digits = 3", "TimeZone = 'UTC'", "DateStyle = 'ISO'"):
        conn.execute(sa.text(f"SET LOCAL {setting}"))
    params = (key.exchange, key.symbol, str(key.timeframe), start, end)
    rows = 0
    with driver.cursor() as cursor, cursor.copy(_COPY_CSV_OUT, params):
        # The header goes out with the first rows, once the COPY runs, so a failed statement writes nothing.
        header = CSV_HEADER.encode()
        pending = bytearray()
        for data in _messages(driver.pgconn):
            pending += data
            if len(pending) >= _CSV_FLUSH:
                # Every line ends in a newline and none holds one inside (no text column).
                rows += pending.count(b"\n")
                out.write(header + _isoformat_times(pending))
                header = b""
                pending.clear()
    rows += pending.count(b"\n")
    out.write(header + _isoformat_times(pending))
    return rows


def _messages(pgconn: psycopg.pq.abc.PGconn) -> Iterator[memoryview]:
    """The data messages of a text or CSV COPY TO STDOUT, straight from libpq (as ``sql_copy._parse`` reads a
    binary one), up to its end; then its result is read here, as psycopg would, and a failed COPY raises the server's
    error."""
    while True:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes > 0:
            yield data
        elif nbytes == 0:
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        elif nbytes == -1:
            _copy_result(pgconn)
            return
        else:
            error = pgconn.get_error_message().strip() or "the COPY failed"
            raise psycopg.OperationalError(f"COPY TO STDOUT failed: {error}")


def _copy_result(pgconn: psycopg.pq.abc.PGconn) -> None:
    """Read the result of a COPY whose data libpq has seen end; raise the server's error if it failed."""
    failed = None
    while (result := pgconn.get_result()) is not None:
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK and failed is None:
            failed = result
    if failed is not None:
        raise psycopg.errors.error_from_result(failed)
