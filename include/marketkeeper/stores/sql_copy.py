"""Staging candles for the SQL store on PostgreSQL: a temporary float8 table filled by one binary ``COPY``.

The payload is built with numpy (no per-row Python): every record has the same fixed width, so the layout
is one big-endian numpy dtype and the rows are written into one buffer at once. Nothing from the input
reaches the DDL or the COPY statement: the staging table's name and columns are constants.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from marketkeeper.candles import QUOTE_VOLUME, TRADE_COUNT
from marketkeeper.ledger.types import UTCDateTime
from marketkeeper.stores.base import VALUE_COLUMNS, PreparedCandles

__all__ = ["STAGING_TABLE", "copy_payload", "stage_candles", "staging"]

# PostgreSQL's binary COPY: signature, flags, header extension length; trailer is a field count of -1.
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER: Final = b"\xff\xff"
# Binary timestamptz counts microseconds from 2000-01-01 UTC.
_PG_EPOCH_US: Final = 946_684_800_000_000
_COPY_SLICE: Final = 8 << 20

STAGING_TABLE: Final = "marketkeeper_candles_staging"
_CREATE_STAGING: Final = sa.text(
    "CREATE TEMPORARY TABLE marketkeeper_candles_staging ("
    "open_time timestamptz NOT NULL, open float8 NOT NULL, high float8 NOT NULL, low float8 NOT NULL, "
    "close float8 NOT NULL, volume float8 NOT NULL, quote_volume float8 NOT NULL, "
    "has_trade_count boolean NOT NULL, trade_count bigint NOT NULL"
    ") ON COMMIT DROP"
)
_COPY_STAGING: Final = (
    "COPY marketkeeper_candles_staging "
    "(open_time, open, high, low, close, volume, quote_volume, has_trade_count, trade_count) "
    "FROM STDIN (FORMAT BINARY)"
)

#: The staging table for SQLAlchemy statements that read it (the upsert's ``INSERT .. SELECT``).
staging = sa.table(
    STAGING_TABLE,
    sa.column("open_time", UTCDateTime()),
    *(sa.column(name, postgresql.DOUBLE_PRECISION()) for name in (*VALUE_COLUMNS, QUOTE_VOLUME)),
    sa.column("has_trade_count", sa.Boolean()),
    sa.column(TRADE_COUNT, sa.BigInteger()),
)


def _copy_layout() -> np.dtype[Any]:
    layout: list[tuple[str, str]] = [("fields", ">i2"), ("open_time_len", ">i4"), ("open_time", ">i8")]
    for name in (*VALUE_COLUMNS, QUOTE_VOLUME):
        layout += [(f"{name}_len", ">i4"), (name, ">f8")]
    layout += [("has_trade_count_len", ">i4"), ("has_trade_count", "?")]
    layout += [(f"{TRADE_COUNT}_len", ">i4"), (TRADE_COUNT, ">i8")]
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
