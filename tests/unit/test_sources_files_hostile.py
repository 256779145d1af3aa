"""Binance kline files that lie: rows outside their file's period, zip bombs, names that are no date, odd bytes.

Each case either becomes a reject with a reason or fails the fetch naming the file; none is dropped silently,
none prints a traceback, and none is read into memory beyond what the file's period can hold.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import struct
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.sources import BinanceFilesSource
from marketkeeper.sources.base import CorruptFileError, Reject, SourceError, UnknownSymbolError
from marketkeeper.sources.binance_files import MAX_ROW_BYTES, capped_lines, max_file_bytes
from marketkeeper.timeframes import InvalidRangeError
from tests.unit.test_sources_files import KEY, LATER, T0, kline_lines, source, write_csv, write_zip

DAY = timedelta(days=1)
NAME = "BTCUSDT-1m-2024-01-01.csv"


def fetch(directory: Path, start: datetime = T0, end: datetime = T0 + DAY) -> tuple[int, list[Reject]]:
    """How many candles a fetch yields, and its rejects."""
    batches = list(source(directory).fetch_batches(KEY, start, end))
    return sum(len(b.frame) for b in batches), [r for b in batches for r in b.rejects]


def in_seconds(lines: list[str]) -> list[str]:
    return [",".join([str(int(f.split(",")[0]) // 1000), *f.split(",")[1:]]) for f in lines]


# --- rows outside the period the file's name declares ---------------------------------------------------------


def test_rows_of_another_day_are_rejects_naming_file_line_time_and_period(tmp_path: Path) -> None:
    lines = kline_lines(T0, 10) + kline_lines(T0 + DAY, 2)  # two rows of 2024-01-02 in the 01-01 file
    write_csv(tmp_path, NAME, lines)
    candles, rejects = fetch(tmp_path)
    assert candles == 10
    assert [(r.file, r.line, r.raw) for r in rejects] == [(NAME, 11, lines[10]), (NAME, 12, lines[11])]
    reason = rejects[0].reason
    assert f"line 11 of {NAME}" in reason
    assert "open_time 1704153600000 (2024-01-02T00:00:00+00:00 read as ms)" in reason
    assert "outside [2024-01-01T00:00:00+00:00, 2024-01-02T00:00:00+00:00), the period the file's name" in reason
    assert "misnamed" in reason
    # The row's time contradicts its file: it is not trusted as the quarantine key.
    assert rejects[0].open_time is None


def test_out_of_period_rejects_are_reported_once_over_a_partition_of_the_range(tmp_path: Path) -> None:
    lines = kline_lines(T0, 1440)
    lines[700] = lines[700].replace(",42700.5,", ",oops,")  # a reject with a time, at 11:40
    lines += kline_lines(T0 + 3 * DAY, 1)  # outside the period: belongs to the file, i.e. to 00:00
    lines += in_seconds(kline_lines(T0, 1))  # seconds: 1970, outside too
    write_csv(tmp_path, NAME, lines)
    hours = [T0 + timedelta(hours=h) for h in range(25)]
    runs = [fetch(tmp_path, a, b) for a, b in itertools.pairwise(hours)]
    assert sum(candles for candles, _ in runs) == 1439
    reported = [(hour, r.line) for hour, (_, rejects) in enumerate(runs) for r in rejects]
    assert sorted(reported) == [(0, 1441), (0, 1442), (11, 701)]
    # The same file read as one run reports the same three.
    assert sorted(r.line or 0 for r in fetch(tmp_path)[1]) == [701, 1441, 1442]


def test_rejects_of_a_file_starting_before_the_range_belong_to_its_first_instant(tmp_path: Path) -> None:
    write_csv(tmp_path, NAME, kline_lines(T0, 1440) + kline_lines(T0 - DAY, 1))
    assert fetch(tmp_path, T0 + timedelta(hours=5), T0 + DAY) == (1140, [])
    assert len(fetch(tmp_path, T0, T0 + timedelta(hours=5))[1]) == 1


def test_a_file_written_in_seconds_fails_naming_the_file_and_the_cause(tmp_path: Path) -> None:
    write_csv(tmp_path, NAME, in_seconds(kline_lines(T0, 1440)))
    expected = rf"{NAME}: all 1440 row\(s\) with an open time lie outside \[2024-01-01T00:00:00\+00:00, 2024-01-02"
    with pytest.raises(CorruptFileError, match=expected) as info:
        fetch(tmp_path)
    assert "first: line 1, open_time 1704067200" in str(info.value)
    assert "open times look like seconds, expected milliseconds or microseconds" in str(info.value)
    # Every run reading the file fails, not only the one covering its first hour.
    with pytest.raises(CorruptFileError, match="look like seconds"):
        fetch(tmp_path, T0 + timedelta(hours=12), T0 + timedelta(hours=13))


def test_a_file_in_nanoseconds_fails_naming_the_cause(tmp_path: Path) -> None:
    lines = [",".join([f.split(",")[0] + "000000", *f.split(",")[1:]]) for f in kline_lines(T0, 5)]
    write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", lines, header=True)
    with pytest.raises(CorruptFileError, match="open times look like nanoseconds"):
        fetch(tmp_path)


def test_a_daily_file_holding_another_days_rows_fails(tmp_path: Path) -> None:
    write_csv(tmp_path, "BTCUSDT-1m-2024-01-02.csv", kline_lines(T0, 1440))
    with pytest.raises(CorruptFileError, match=r"BTCUSDT-1m-2024-01-02\.csv: all 1440 row.*another period"):
        fetch(tmp_path, T0, T0 + 2 * DAY)


def test_mixed_units_in_one_file_are_rejects_not_a_failure(tmp_path: Path) -> None:
    lines = kline_lines(T0, 3)
    lines[1] = kline_lines(T0 + timedelta(minutes=1), 1, micro=True)[0]
    write_csv(tmp_path, NAME, lines)
    candles, rejects = fetch(tmp_path)
    assert candles == 2
    assert [r.reason for r in rejects] == ["open_time is in microseconds but the file's first row is in milliseconds"]
    assert rejects[0].open_time == T0 + timedelta(minutes=1)


# --- zip bombs and oversized files -----------------------------------------------------------------------------


def write_bomb(directory: Path, name: str, size: int) -> Path:
    path = directory / name
    block = b"0" * (1 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open(name.replace(".zip", ".csv"), "w") as member,
    ):
        for _ in range(size // len(block)):
            member.write(block)
    (directory / f"{name}.CHECKSUM").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}\n")
    return path


def test_a_zip_bomb_fails_on_its_declared_size_naming_file_cap_and_size(tmp_path: Path) -> None:
    path = write_bomb(tmp_path, "BTCUSDT-1m-2024-01-01.zip", 64 << 20)
    assert path.stat().st_size < 200_000  # 64 MiB of zeros deflate to ~64 KB
    cap = max_file_bytes(1440)
    assert cap == 1441 * MAX_ROW_BYTES
    with pytest.raises(CorruptFileError, match=rf"{path.name} inflates to {64 << 20} bytes .* more than the {cap}"):
        fetch(tmp_path)


def test_a_zip_whose_header_understates_its_size_is_not_inflated_beyond_it(tmp_path: Path) -> None:
    path = write_bomb(tmp_path, "BTCUSDT-1m-2024-01-01.zip", 16 << 20)
    data = bytearray(path.read_bytes())
    # Claim 1000 bytes in both the local header (offset 22) and the central directory (offset 24).
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at : at + 4] = struct.pack("<I", 1000)
    path.write_bytes(bytes(data))
    (tmp_path / f"{path.name}.CHECKSUM").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    with pytest.raises(CorruptFileError, match=rf"{path.name}"):
        fetch(tmp_path)


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.handed_out = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.handed_out += len(chunk)
        return chunk


def test_the_streaming_cap_holds_whatever_a_header_says() -> None:
    stream = CountingStream(b"1,2,3\n" * 1_000_000)  # 6 MB
    lines = capped_lines(stream, limit=2 << 20, file="x.csv", source="files:test")
    with pytest.raises(CorruptFileError, match=r"x\.csv inflates to more than 2097152 bytes \(read 3145728 so far\)"):
        for _ in lines:
            pass
    assert stream.handed_out <= (2 << 20) + (1 << 20)


def test_capped_lines_numbers_lines_and_keeps_the_last_one_without_newline() -> None:
    lines = list(capped_lines(io.BytesIO(b"a\n\nb\r\nc"), limit=100, file="x.csv", source="files:test"))
    assert lines == [(1, b"a"), (2, b""), (3, b"b\r"), (4, b"c")]


def test_the_cap_follows_what_the_period_can_hold(tmp_path: Path) -> None:
    # One 1M candle fits in a few hundred bytes: 100 KB in a monthly 1M file is not a kline file.
    (tmp_path / "BTCUSDT-1mo-2024-01.csv").write_bytes(b"1" * 100_000)
    key = SeriesKey.of("binance", "BTC/USDT", "1M")
    with pytest.raises(CorruptFileError, match=r"BTCUSDT-1mo-2024-01\.csv is 100000 bytes, more than the 65536"):
        list(source(tmp_path).fetch_batches(key, T0, datetime(2024, 2, 1, tzinfo=UTC)))


def test_more_rows_than_the_period_can_hold_fail_before_filling_memory(tmp_path: Path) -> None:
    (tmp_path / "BTCUSDT-1mo-2024-01.csv").write_text("x\n" * 1000)
    key = SeriesKey.of("binance", "BTC/USDT", "1M")
    with pytest.raises(CorruptFileError, match=r"BTCUSDT-1mo-2024-01\.csv holds more than 18 rows"):
        list(source(tmp_path).fetch_batches(key, T0, datetime(2024, 2, 1, tzinfo=UTC)))


def test_a_full_monthly_file_is_within_the_cap_and_streamed_in_chunks(tmp_path: Path) -> None:
    write_zip(tmp_path, "BTCUSDT-1m-2024-01.zip", kline_lines(T0, 31 * 1440, micro=True), header=True)
    batches = list(source(tmp_path).fetch_batches(KEY, T0, datetime(2024, 2, 1, tzinfo=UTC)))
    assert sum(len(b.frame) for b in batches) == 31 * 1440
    assert all(len(b.frame) <= 100_000 for b in batches)


# --- names that are no date -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("BTCUSDT-1m-2024-13.csv", "2024-13"),
        ("BTCUSDT-1m-2024-02-30.csv", "2024-02-30"),
        ("BTCUSDT-1m-2024-00-01.zip", "2024-00-01"),
        ("BTCUSDT-1m-9999-12.csv", "9999-12"),
    ],
)
def test_a_file_named_for_no_date_fails_naming_it(tmp_path: Path, name: str, declared: str) -> None:
    write_csv(tmp_path, NAME, kline_lines(T0, 10))
    (tmp_path / name).write_text("")
    with pytest.raises(CorruptFileError, match=rf"{name} is named for {declared}, which is not a date") as info:
        fetch(tmp_path)
    assert "\n" not in str(info.value)


# --- odd bytes inside a line ------------------------------------------------------------------------------------


def test_a_row_holding_a_nul_byte_is_a_reject_kept_verbatim(tmp_path: Path) -> None:
    lines = kline_lines(T0, 5)
    lines[1] = lines[1].replace(",42001.5,", ",420\x0001.5,", 1)
    lines[3] = "\x00" + lines[3]
    write_csv(tmp_path, NAME, lines)
    candles, rejects = fetch(tmp_path)
    assert candles == 3
    assert [(r.line, r.raw) for r in rejects] == [(2, lines[1]), (4, lines[3])]
    assert "is not a number: '420\\x0001.5'" in rejects[0].reason
    assert rejects[0].open_time == T0 + timedelta(minutes=1)
    assert "open_time is not an integer" in rejects[1].reason and rejects[1].open_time is None


def test_a_line_that_is_not_utf8_is_a_reject_with_its_bytes_escaped(tmp_path: Path) -> None:
    lines = [line.encode() for line in kline_lines(T0, 3)]
    lines[1] = lines[1].replace(b",42001.5,", b",42\xff\xfe01.5,", 1)
    (tmp_path / NAME).write_bytes(b"\n".join(lines) + b"\n")
    candles, rejects = fetch(tmp_path)
    assert candles == 2
    assert len(rejects) == 1 and rejects[0].line == 2 and "not UTF-8" in rejects[0].reason
    assert rejects[0].raw == lines[1].decode("utf-8", "backslashreplace")
    assert "\\xff\\xfe" in rejects[0].raw


def test_a_file_that_is_not_text_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"\x1f\x8b\x08\x00\xff\xfe binary\n" + kline_lines(T0, 1)[0].encode())
    with pytest.raises(CorruptFileError, match=rf"{NAME} is not UTF-8 text"):
        fetch(tmp_path)


def test_digits_that_are_not_ascii_are_rejects(tmp_path: Path) -> None:
    lines = kline_lines(T0, 3)
    lines[1] = lines[1].replace(",11,", ",1_1,", 1)  # int() would read 11
    lines[2] = lines[2].replace(",42002.5,", ",\uff14\uff12002.5,", 1)  # float() would read fullwidth digits
    write_csv(tmp_path, NAME, lines)
    candles, rejects = fetch(tmp_path)
    assert candles == 1
    assert [r.reason for r in rejects] == [
        "count is not an integer: '1_1'",
        "open is not a number: '\uff14\uff12002.5'",
    ]
    assert rejects[1].raw == lines[2]


# --- ranges and names from users --------------------------------------------------------------------------------


def test_a_range_outside_the_supported_span_is_refused_clearly(tmp_path: Path) -> None:
    write_csv(tmp_path, NAME, kline_lines(T0, 10))
    with pytest.raises(InvalidRangeError, match=r"start 1500-01-01T00:00:00\+00:00 is outside the supported span"):
        fetch(tmp_path, datetime(1500, 1, 1, tzinfo=UTC), T0)


def test_symbols_with_braces_are_named_verbatim_in_the_error(tmp_path: Path) -> None:
    key = SeriesKey.of("binance", "A{x}/USDT", "1m")
    with pytest.raises(UnknownSymbolError, match=r"'A\{x\}/USDT' has no Binance file-name spelling") as info:
        list(BinanceFilesSource(tmp_path, clock=lambda: LATER).fetch_batches(key, T0, T0 + DAY))
    assert "series binance:A{x}/USDT" in str(info.value) or "A{x}/USDT" in str(info.value)
    assert isinstance(info.value, SourceError)


def test_undecodable_lines_count_towards_the_row_cap(tmp_path: Path) -> None:
    (tmp_path / "BTCUSDT-1mo-2024-01.csv").write_bytes(kline_lines(T0, 1)[0].encode() + b"\n\xff\n" * 100)
    key = SeriesKey.of("binance", "BTC/USDT", "1M")
    with pytest.raises(CorruptFileError, match="holds more than 18 rows"):
        list(source(tmp_path).fetch_batches(key, T0, datetime(2024, 2, 1, tzinfo=UTC)))
