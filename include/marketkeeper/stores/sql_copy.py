"""Binary ``COPY`` in and out of PostgreSQL for the SQL store: writes stage candles in a temporary float8
table filled by one ``COPY .. FROM STDIN``; reads stream ``COPY (SELECT ..) TO STDOUT`` (the CSV export,
which needs no numpy, is :mod:`marketkeeper.stores.sql_csv`).

Both directions use rows of one fixed width (an absent quote volume travels as NaN, an absent trade count as
``has_trade_count = false``, an absent derived tier count as -1), so the layout is one big-endian numpy dtype
and rows are built or parsed a buffer at a time, never a row at a time in Python. Nothing from the input
reaches a statement's text: table and column names are constants, and a read's series and range are bound
by psycopg.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketkeeper.candles import DERIVED_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, SeriesKey
from marketkeeper.series import VALUE_COLUMNS
from marketkeeper.stores.frames import frame_from_columns
from marketkeeper.stores.prepared import PreparedCandles

__all__ = ["copy_frames", "copy_open_times", "copy_payload", "stage_candles"]

T = TypeVar("T")

# PostgreSQL's binary COPY: signature, flags, header extension length; trailer is a field count of -1.
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER: Final = b"\xff\xff"
# Binary timestamptz counts microseconds from 2000-01-01 UTC.
_PG_EPOCH_US: Final = 946_684_800_000_000
_COPY_SLICE: Final = 8 << 20

_CREATE_STAGING: Final = sa.text(
    "CREATE TEMPORARY TABLE marketkeeper_candles_staging ("
    "open_time timestamptz NOT NULL, open float8 NOT NULL, high float8 NOT NULL, low float8 NOT NULL, "
    "close float8 NOT NULL, volume float8 NOT NULL, quote_volume float8 NOT NULL, "
    "has_trade_count boolean NOT NULL, trade_count bigint NOT NULL, "
    "source_count bigint NOT NULL, expected_count bigint NOT NULL"
    ") ON COMMIT DROP"
)
_COPY_STAGING: Final = (
    "COPY marketkeeper_candles_staging "
    "(open_time, open, high, low, close, volume, quote_volume, has_trade_count, trade_count, "
    "source_count, expected_count) FROM STDIN (FORMAT BINARY)"
)


def _copy_layout() -> np.dtype[Any]:
    layout: list[tuple[str, str]] = [("fields", ">i2"), ("open_time_len", ">i4"), ("open_time", ">i8")]
    for name in (*VALUE_COLUMNS, QUOTE_VOLUME):
        layout += [(f"{name}_len", ">i4"), (name, ">f8")]
    layout += [("has_trade_count_len", ">i4"), ("has_trade_count", "?")]
    layout += [(f"{TRADE_COUNT}_len", ">i4"), (TRADE_COUNT, ">i8")]
    for name in DERIVED_COLUMNS:
        layout += [(f"{name}_len", ">i4"), (name, ">i8")]
    return np.dtype(layout)


_COPY_LAYOUT: Final = _copy_layout()


def _copy_template() -> bytes:
    record = np.zeros(1, dtype=_COPY_LAYOUT)
    record["fields"] = len(_COPY_LAYOUT.names or ()) // 2
    for name in _COPY_LAYOUT.names or ():
        if name.endswith("_len"):
            record[name] = _COPY_LAYOUT[name[: -len("_len")]].itemsize
    return record.tobytes()


_COPY_TEMPLATE: Final = _copy_template()


def copy_payload(prepared: PreparedCandles) -> memoryview:
    """The staging table's rows in PostgreSQL's binary COPY format, built with numpy (no per-row Python).

    Every record has the same fixed width: an absent quote volume travels as NaN (the upsert turns it into
    NULL) and an absent trade count as ``has_trade_count = false``, which keeps rows in open-time order
    (index inserts stay local) and the layout a single numpy dtype.
    """
    n = len(prepared)
    # Repeating one record with the constant lengths filled in is far cheaper than assigning each constant
    # column of a packed big-endian array.
    buffer = bytearray(len(_COPY_HEADER) + n * _COPY_LAYOUT.itemsize + len(_COPY_TRAILER))
    buffer[: len(_COPY_HEADER)] = _COPY_HEADER
    body = slice(len(_COPY_HEADER), len(buffer) - len(_COPY_TRAILER))
    buffer[body.stop :] = _COPY_TRAILER
    raw = np.frombuffer(buffer, dtype=np.uint8, count=n * _COPY_LAYOUT.itemsize, offset=body.start)
    raw.reshape(n, _COPY_LAYOUT.itemsize)[:] = np.frombuffer(_COPY_TEMPLATE, dtype=np.uint8)
    records = np.frombuffer(buffer, dtype=_COPY_LAYOUT, count=n, offset=body.start)
    records["open_time"] = prepared.times_ns // 1000 - _PG_EPOCH_US
    for name in VALUE_COLUMNS:
        records[name] = prepared.values[name]
    records[QUOTE_VOLUME] = np.nan if prepared.quote_volume is None else prepared.quote_volume
    if prepared.trade_count is not None and prepared.trade_count_present is not None:
        records["has_trade_count"] = prepared.trade_count_present
        records[TRADE_COUNT] = prepared.trade_count
    for name in DERIVED_COLUMNS:
        records[name] = prepared.derived.get(name, -1)
    return memoryview(buffer)


def stage_candles(conn: Connection, prepared: PreparedCandles) -> None:
    """Create the staging table in ``conn``'s transaction (dropped at commit) and COPY ``prepared`` into it."""
    conn.execute(_CREATE_STAGING)
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"binary COPY needs a psycopg 3 connection, got {type(driver).__name__}")
    payload = copy_payload(prepared)
    with driver.cursor() as cursor, cursor.copy(_COPY_STAGING) as copy:
        for begin in range(0, len(payload), _COPY_SLICE):
            copy.write(payload[begin : begin + _COPY_SLICE])


# --- reads -----------------------------------------------------------------------------------------------

# The columns of the staging layout, so a read parses with the very dtype a write builds.
_COPY_CANDLES_OUT: Final = (
    "COPY (SELECT open_time, open, high, low, close, volume, coalesce(quote_volume, 'NaN'::float8), "
    "trade_count IS NOT NULL, coalesce(trade_count, 0)::bigint, "
    "coalesce(source_count, -1)::bigint, coalesce(expected_count, -1)::bigint FROM candles "
    "WHERE exchange = %s AND symbol = %s AND timeframe = %s AND open_time >= %s AND open_time < %s "
    "ORDER BY open_time) TO STDOUT (FORMAT BINARY)"
)
_COPY_TIMES_OUT: Final = (
    "COPY (SELECT open_time FROM candles "
    "WHERE exchange = %s AND symbol = %s AND timeframe = %s AND open_time >= %s AND open_time < %s "
    "ORDER BY open_time) TO STDOUT (FORMAT BINARY)"
)
_TIMES_LAYOUT: Final = np.dtype([("fields", ">i2"), ("open_time_len", ">i4"), ("open_time", ">i8")])
#: Open times per parsed piece of :func:`copy_open_times` (1.4 MB of COPY data).
_TIMES_CHUNK: Final = 100_000


def _check_lengths(records: npt.NDArray[Any], layout: np.dtype[Any]) -> None:
    """Refuse records whose field count or lengths are not the layout's: a NULL would shift every byte after it."""
    names = layout.names or ()
    fields = len(names) // 2
    bad = records["fields"] != fields
    for name in names:
        if name.endswith("_len"):
            bad |= records[name] != layout[name[: -len("_len")]].itemsize
    if bad.any():
        raise psycopg.DataError(f"COPY row {int(np.flatnonzero(bad)[0])} does not have the expected fixed-width fields")


def _records(buffer: bytearray, layout: np.dtype[Any], convert: Callable[[npt.NDArray[Any]], T]) -> T:
    records = np.frombuffer(buffer, dtype=layout)
    _check_lengths(records, layout)
    out = convert(records)  # copies into native arrays, so the view dies here and the buffer can be reused
    del records
    return out


def _parse(
    pgconn: psycopg.pq.abc.PGconn, layout: np.dtype[Any], chunk_rows: int, convert: Callable[[npt.NDArray[Any]], T]
) -> Iterator[T]:
    """The rows of a binary ``COPY .. TO STDOUT`` of fixed-width ``layout`` records, read straight from libpq,
    ``chunk_rows`` at a time, each piece converted as soon as it is complete.

    PostgreSQL sends every row as a message of its own, the header with the first and the trailer alone (or
    header and trailer together when there are no rows). psycopg's ``Copy.read`` spends a generator and a wait
    on each message: on two cores that alone cost more than PostgreSQL's own work, so this loop is psycopg's
    ``copy_from`` without those layers, and a row message (one of exactly the record's size) costs a call and
    a copy into the piece's buffer (keeping the messages themselves alive would cost an object each). Any
    other message is the header, the trailer, or a row that is not the layout's (a NULL would shift every byte
    after it): refused, as :func:`_check_lengths` refuses a wrong length inside a record.
    """
    size = layout.itemsize
    piece = size * chunk_rows
    get = pgconn.get_copy_data
    buffer = bytearray()
    header = True
    while True:
        nbytes, data = get(1)
        if nbytes == size and not header:
            buffer += data
            if len(buffer) >= piece:
                yield _records(buffer, layout, convert)
                buffer = bytearray()
        elif nbytes > 0:
            message = bytes(data)
            if header:
                if not message.startswith(_COPY_HEADER):
                    raise psycopg.DataError("COPY TO STDOUT did not start with the binary COPY header")
                message = message[len(_COPY_HEADER) :]
                header = False
            if message == _COPY_TRAILER:
                break
            if message:
                if len(message) != size:
                    rows = len(buffer) // size
                    raise psycopg.DataError(f"COPY row {rows} does not have the expected fixed-width fields")
                buffer += message
                if len(buffer) >= piece:
                    yield _records(buffer, layout, convert)
                    buffer = bytearray()
        elif nbytes == 0:
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        else:
            # The COPY ended or failed before its trailer: raise, so that psycopg cancels and cleans up.
            error = pgconn.get_error_message().strip() or "the COPY ended before its trailer"
            raise psycopg.OperationalError(f"COPY TO STDOUT failed: {error}")
    if buffer:
        yield _records(buffer, layout, convert)


def _times_ns(pg_us: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    return (pg_us.astype(np.int64) + _PG_EPOCH_US) * 1000


def _candle_frame(records: npt.NDArray[Any]) -> pd.DataFrame:
    quote_volume = records[QUOTE_VOLUME].astype(np.float64)
    present = records["has_trade_count"].astype(np.bool_)
    return frame_from_columns(
        _times_ns(records["open_time"]),
        {name: records[name].astype(np.float64) for name in VALUE_COLUMNS},
        quote_volume=quote_volume,
        trade_count=pd.arrays.IntegerArray(records[TRADE_COUNT].astype(np.int64), ~present),
        derived={name: records[name].astype(np.int64) for name in DERIVED_COLUMNS},
    )


@contextmanager
def _copy_out(conn: Connection, statement: str, key: SeriesKey, start: datetime, end: datetime) -> Iterator[Any]:
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"binary COPY needs a psycopg 3 connection, got {type(driver).__name__}")
    # COPY takes no server-side parameters: psycopg binds these client-side, quoted as literals.
    params = (key.exchange, key.symbol, str(key.timeframe), start, end)
    with driver.cursor() as cursor, cursor.copy(statement, params) as copy:
        yield driver.pgconn
        # The trailer was the last data: psycopg reads the end of the COPY and its result (or error) itself.
        if copy.read():
            raise psycopg.DataError("COPY TO STDOUT sent data after the binary COPY trailer")


def copy_frames(
    conn: Connection, key: SeriesKey, start: datetime, end: datetime, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The candles of ``key`` in ``[start, end)`` as canonical frames of at most ``chunk_rows``, parsed from one
    streamed binary ``COPY (SELECT ..) TO STDOUT`` (the bits of every double travel unconverted)."""
    with _copy_out(conn, _COPY_CANDLES_OUT, key, start, end) as copy:
        yield from _parse(copy, _COPY_LAYOUT, chunk_rows, _candle_frame)


def copy_open_times(conn: Connection, key: SeriesKey, start: datetime, end: datetime) -> npt.NDArray[np.int64]:
    """The open times of ``key`` in ``[start, end)`` as ascending int64 nanoseconds: one binary COPY of the
    ``open_time`` column."""
    with _copy_out(conn, _COPY_TIMES_OUT, key, start, end) as copy:
        parts = list(_parse(copy, _TIMES_LAYOUT, _TIMES_CHUNK, lambda r: _times_ns(r["open_time"])))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
