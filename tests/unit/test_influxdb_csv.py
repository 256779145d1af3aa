"""The InfluxDB store's CSV export text (``stores.influxdb_csv.csv_rows``): InfluxDB's chunked rows rewritten
into candle CSV lines exactly as the other stores print them (isoformat UTC times, empty absent fields)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marketkeeper.influxdb.chunked import Chunk
from marketkeeper.influxdb.errors import InfluxDBError
from marketkeeper.stores.influxdb_csv import csv_rows

COLUMNS = ("time", "open", "close", "trade_count")


def chunk(rows: bytes, columns: tuple[str, ...] = COLUMNS) -> Chunk:
    """A chunk of these CSV-like rows as InfluxDB's JSON carries them: ``"values":[[row],[row]]``."""
    return Chunk(name="candles", columns=list(columns), values=rows.rstrip(b"\n").replace(b"\n", b"],["))


def test_times_become_isoformat_and_null_an_empty_field() -> None:
    rows = b'"2024-01-01T00:00:00Z",42000.5,7,null\n"2024-01-01T00:01:00Z",1e-7,null,12\n'
    assert csv_rows(chunk(rows), COLUMNS) == (
        b"2024-01-01T00:00:00+00:00,42000.5,7,\n2024-01-01T00:01:00+00:00,1e-7,,12\n"
    )


@pytest.mark.parametrize(
    ("fraction", "printed"),
    [(b".00007", b".000070"), (b".5", b".500000"), (b".123456", b".123456"), (b".123456789", b".123456")],
)
def test_a_fraction_of_a_second_prints_as_microseconds_like_isoformat(fraction: bytes, printed: bytes) -> None:
    rows = b'"2024-01-01T00:00:00Z",1,2,3\n"2024-01-01T00:01:00' + fraction + b'Z",4,5,null\n'
    lines = csv_rows(chunk(rows), COLUMNS).splitlines()
    assert lines[0] == b"2024-01-01T00:00:00+00:00,1,2,3"
    assert lines[1] == b"2024-01-01T00:01:00" + printed + b"+00:00,4,5,"
    when = datetime.fromisoformat(lines[1].split(b",")[0].decode())
    assert when.tzinfo is not None and when.utcoffset() == UTC.utcoffset(None)


def test_a_first_row_with_a_fraction_is_rewritten_too() -> None:
    rows = b'"2024-01-01T00:00:00.25Z",1,2,3\n'
    assert csv_rows(chunk(rows), COLUMNS) == b"2024-01-01T00:00:00.250000+00:00,1,2,3\n"


def test_an_empty_chunk_is_no_text() -> None:
    assert csv_rows(chunk(b""), COLUMNS) == b""


def test_columns_other_than_the_query_s_are_refused_naming_both() -> None:
    with pytest.raises(InfluxDBError, match=r"columns \['time', 'close'\], expected \['time', 'open'"):
        csv_rows(chunk(b'"2024-01-01T00:00:00Z",1\n', ("time", "close")), COLUMNS)


def test_epoch_times_are_refused() -> None:
    with pytest.raises(InfluxDBError, match="not in RFC3339"):
        csv_rows(chunk(b"1704067200000000000,1,2,3\n"), COLUMNS)
