"""The binary COPY reader of the SQL store (``stores.sql_copy._parse``) fed PostgreSQL's message sequence: the
header with the first row, a message per row, the trailer alone. Rows come back in pieces of ``chunk_rows``;
a row that is not the fixed layout, a missing header, or a COPY that ends before its trailer is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from marketkeeper.stores.sql_copy import _COPY_HEADER, _COPY_TRAILER, _TIMES_LAYOUT, _parse


class ScriptedConn:
    """What ``_parse`` uses of a libpq connection: ``get_copy_data`` answering from a script."""

    def __init__(self, messages: list[bytes | int]) -> None:
        self._messages: Iterator[bytes | int] = iter(messages)
        self.socket = -1

    def get_copy_data(self, _async: int) -> tuple[int, bytes]:
        message = next(self._messages)
        if isinstance(message, int):
            return message, b""
        return len(message), message

    def get_error_message(self) -> str:
        return "server closed the connection unexpectedly"


def row(pg_us: int) -> bytes:
    record = np.zeros(1, dtype=_TIMES_LAYOUT)
    record["fields"], record["open_time_len"], record["open_time"] = 1, 8, pg_us
    return record.tobytes()


def parse(messages: list[bytes | int], chunk_rows: int) -> list[list[int]]:
    conn: Any = ScriptedConn(messages)
    return [piece["open_time"].tolist() for piece in _parse(conn, _TIMES_LAYOUT, chunk_rows, lambda r: r.copy())]


@pytest.mark.parametrize(("chunk_rows", "pieces"), [(1, [[1], [2], [3]]), (2, [[1, 2], [3]]), (5, [[1, 2, 3]])])
def test_rows_come_back_in_pieces_of_chunk_rows(chunk_rows: int, pieces: list[list[int]]) -> None:
    messages: list[bytes | int] = [_COPY_HEADER + row(1), row(2), row(3), _COPY_TRAILER]
    assert parse(messages, chunk_rows) == pieces


def test_no_rows_is_header_and_trailer_together() -> None:
    assert parse([_COPY_HEADER + _COPY_TRAILER], 10) == []


def test_a_row_of_another_width_is_refused_naming_it() -> None:
    short = row(2)[:-4]
    with pytest.raises(psycopg.DataError, match="COPY row 1 does not have the expected fixed-width fields"):
        parse([_COPY_HEADER + row(1), short, _COPY_TRAILER], 10)


def test_a_row_with_a_wrong_field_length_is_refused() -> None:
    bad = bytearray(row(2))
    bad[2:6] = (4).to_bytes(4, "big")  # open_time_len 4: a NULL or another type
    with pytest.raises(psycopg.DataError, match="fixed-width"):
        parse([_COPY_HEADER + row(1), bytes(bad), _COPY_TRAILER], 10)


def test_a_stream_without_the_header_is_refused() -> None:
    with pytest.raises(psycopg.DataError, match="header"):
        parse([row(1), _COPY_TRAILER], 10)


def test_a_copy_that_ends_before_its_trailer_raises_the_server_s_error() -> None:
    with pytest.raises(psycopg.OperationalError, match="COPY TO STDOUT failed: server closed the connection"):
        parse([_COPY_HEADER + row(1), row(2), -2], 10)
