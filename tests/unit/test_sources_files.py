"""Binance public-data kline files: every layout Binance ships is read, and nothing bad is read silently."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.sources import BinanceFilesSource, make_source
from marketkeeper.sources.base import ChecksumMismatchError, CorruptFileError, NoDataError
from marketkeeper.sources.binance_files import binance_interval, binance_symbol
from marketkeeper.timeframes import Timeframe

T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEY = SeriesKey.of("binance", "BTC/USDT", "1m")
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def kline_lines(
    start: datetime, count: int, *, micro: bool = False, step: timedelta = timedelta(minutes=1)
) -> list[str]:
    scale = 1_000_000 if micro else 1000
    lines = []
    for i in range(count):
        opened = start + i * step
        stamp = int(opened.timestamp()) * scale
        close_stamp = stamp + int(step.total_seconds()) * scale - 1
        o = 42000 + i
        lines.append(
            f"{stamp},{o}.5,{o + 2}.25,{o - 1}.75,{o + 1}.5,1.{i:03d},{close_stamp},"
            f"{o * 1.5:.4f},{10 + i},0.5,21000.1,0"
        )
    return lines


def write_csv(directory: Path, name: str, lines: list[str], *, header: bool = False) -> Path:
    path = directory / name
    path.write_text("\n".join(([HEADER] if header else []) + lines) + "\n")
    return path


def write_zip(directory: Path, name: str, lines: list[str], *, header: bool = False, checksum: bool = True) -> Path:
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name.replace(".zip", ".csv"), "\n".join(([HEADER] if header else []) + lines) + "\n")
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (directory / f"{name}.CHECKSUM").write_text(f"{digest}  {name}\n")
    return path


def source(directory: Path) -> BinanceFilesSource:
    return BinanceFilesSource(directory, clock=lambda: LATER)


def frames_of(files: BinanceFilesSource, key: SeriesKey, start: datetime, end: datetime) -> list[pd.DataFrame]:
    """The candle frames of a fetch that must reject nothing."""
    frames = []
    for batch in files.fetch_batches(key, start, end):
        assert not batch.rejects, [str(r) for r in batch.rejects]
        if len(batch.frame):
            frames.append(batch.frame)
    return frames


def read_all(directory: Path, key: SeriesKey = KEY, start: datetime = T0, end: datetime | None = None) -> pd.DataFrame:
    frames = frames_of(source(directory), key, start, end or start + timedelta(days=1))
    return pd.concat(frames, ignore_index=True)


def test_symbol_and_interval_spellings() -> None:
    assert binance_symbol("BTC/USDT") == "BTCUSDT"
    assert binance_symbol("BTC/USDT:USDT") == "BTCUSDT"
    assert binance_interval(Timeframe.parse("1M")) == "1mo"
    assert binance_interval(Timeframe.parse("4h")) == "4h"
    with pytest.raises(ValueError, match="no Binance file-name spelling"):
        binance_symbol("BTC USDT")


@pytest.mark.parametrize("header", [False, True])
def test_csv_with_or_without_header(tmp_path: Path, header: bool) -> None:
    write_csv(tmp_path, "BTCUSDT-1m-2024-01-01.csv", kline_lines(T0, 1440), header=header)
    frame = read_all(tmp_path)
    assert len(frame) == 1440
    first = frame.iloc[0]
    assert first["open_time"] == pd.Timestamp(T0)
    assert (first["open"], first["high"], first["low"], first["close"]) == (42000.5, 42002.25, 41999.75, 42001.5)
    assert first["volume"] == 1.0 and first["quote_volume"] == 63000.0 and first["trade_count"] == 10
    assert str(frame["open_time"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["trade_count"].dtype) == "Int64"


def test_milliseconds_and_microseconds_are_detected_per_file(tmp_path: Path) -> None:
    # Binance switched spot files to microseconds in 2025; older files in the same folder stay in ms.
    write_csv(tmp_path, "BTCUSDT-1m-2024-12-31.csv", kline_lines(T0 + timedelta(days=365), 1440))
    write_zip(tmp_path, "BTCUSDT-1m-2025-01-01.zip", kline_lines(T0 + timedelta(days=366), 1440, micro=True))
    frame = read_all(tmp_path, start=T0 + timedelta(days=365), end=T0 + timedelta(days=367))
    assert len(frame) == 2880
    expected = pd.date_range(T0 + timedelta(days=365), periods=2880, freq="1min", unit="ns")
    assert frame["open_time"].tolist() == expected.tolist()


def test_zip_with_good_checksum(tmp_path: Path) -> None:
    write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 1440), header=True)
    assert len(read_all(tmp_path)) == 1440


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    path = write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 1440))
    (tmp_path / f"{path.name}.CHECKSUM").write_text(f"{'0' * 64}  {path.name}\n")
    with pytest.raises(ChecksumMismatchError, match=r"checksum mismatch for .*BTCUSDT-1m-2024-01-01\.zip"):
        read_all(tmp_path)


def test_checksum_of_another_file_is_a_mismatch(tmp_path: Path) -> None:
    path = write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 1440))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / f"{path.name}.CHECKSUM").write_text(f"{digest}  ETHUSDT-1m-2024-01-01.zip\n")
    with pytest.raises(ChecksumMismatchError, match=r"ETHUSDT-1m-2024-01-01\.zip"):
        read_all(tmp_path)


def test_missing_checksum_is_an_error_unless_allowed(tmp_path: Path) -> None:
    write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 10), checksum=False)
    with pytest.raises(CorruptFileError, match=r"has no BTCUSDT-1m-2024-01-01\.zip\.CHECKSUM"):
        read_all(tmp_path)
    lenient = BinanceFilesSource(tmp_path, require_checksum=False, clock=lambda: LATER)
    assert sum(len(f) for f in frames_of(lenient, KEY, T0, T0 + timedelta(days=1))) == 10


def test_truncated_zip_names_the_file(tmp_path: Path) -> None:
    path = write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 1440), checksum=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # The checksum matches the truncated bytes: corruption must still be caught by reading the zip itself.
    (tmp_path / f"{path.name}.CHECKSUM").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    with pytest.raises(CorruptFileError, match=r"BTCUSDT-1m-2024-01-01\.zip is truncated or corrupt"):
        read_all(tmp_path)


def test_zip_with_a_corrupted_member_names_the_file(tmp_path: Path) -> None:
    path = write_zip(tmp_path, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 1440), checksum=False)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # inside the compressed stream: the CRC check fails
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"BTCUSDT-1m-2024-01-01\.zip"):
        list(BinanceFilesSource(tmp_path, require_checksum=False, clock=lambda: LATER).fetch_batches(KEY, T0, LATER))


def test_malformed_rows_come_back_as_rejects_with_line_numbers(tmp_path: Path) -> None:
    lines = kline_lines(T0, 10)
    lines[2] = "1704067320000,42002.5,oops,1,1,1,1704067379999,1,1,1,1,0"  # a non-number
    lines[4] = "1704067440000,1,2,3"  # too few columns
    lines[6] = "not-a-time,1,2,1,2,1,1,1,1,1,1,0"
    write_csv(tmp_path, "BTCUSDT-1m-2024-01-01.csv", lines, header=True)

    batches = list(source(tmp_path).fetch_batches(KEY, T0, T0 + timedelta(days=1)))
    assert sum(len(b.frame) for b in batches) == 7
    rejects = sorted((r for b in batches for r in b.rejects), key=lambda r: r.line or 0)
    # Line numbers count the header: data row i is on line i + 2.
    assert [(r.line, r.file) for r in rejects] == [
        (4, "BTCUSDT-1m-2024-01-01.csv"),
        (6, "BTCUSDT-1m-2024-01-01.csv"),
        (8, "BTCUSDT-1m-2024-01-01.csv"),
    ]
    assert "high is not a number: 'oops'" in rejects[0].reason
    assert rejects[0].raw == lines[2]
    assert rejects[0].open_time == T0 + timedelta(minutes=2)
    assert "expected 12 columns, got 4" in rejects[1].reason
    assert "open_time is not an integer" in rejects[2].reason and rejects[2].open_time is None
    assert str(rejects[0]).startswith("BTCUSDT-1m-2024-01-01.csv:4: high is not a number")


def test_values_that_parse_are_not_judged_here(tmp_path: Path) -> None:
    # NaN or negative prices are the quality gate's to quarantine: the source passes them through.
    lines = kline_lines(T0, 3)
    fields = lines[1].split(",")
    fields[1], fields[3] = "nan", "-5"
    lines[1] = ",".join(fields)
    write_csv(tmp_path, "BTCUSDT-1m-2024-01-01.csv", lines)
    frame = read_all(tmp_path)
    assert len(frame) == 3 and frame["open"].isna().sum() == 1 and frame["low"].min() == -5


def test_range_filters_rows_and_files(tmp_path: Path) -> None:
    for day in range(3):
        write_csv(tmp_path, f"BTCUSDT-1m-2024-01-0{day + 1}.csv", kline_lines(T0 + timedelta(days=day), 1440))
    write_csv(tmp_path, "ETHUSDT-1m-2024-01-02.csv", kline_lines(T0 + timedelta(days=1), 1440))
    start, end = T0 + timedelta(days=1, hours=23), T0 + timedelta(days=2, hours=1)
    batches = list(source(tmp_path).fetch_batches(KEY, start, end))
    assert len(batches) == 2
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    assert len(frame) == 120
    assert frame["open_time"].min() == pd.Timestamp(start) and frame["open_time"].max() < pd.Timestamp(end)


def test_monthly_file_wins_over_daily_and_zip_over_csv(tmp_path: Path) -> None:
    month = kline_lines(T0, 31 * 24, step=timedelta(hours=1))
    write_zip(tmp_path, "BTCUSDT-1h-2024-01.zip", month)
    write_csv(tmp_path, "BTCUSDT-1h-2024-01.csv", ["garbage"])  # same file unzipped: ignored
    write_csv(tmp_path, "BTCUSDT-1h-2024-01-05.csv", kline_lines(T0 + timedelta(days=4), 24, step=timedelta(hours=1)))
    write_csv(tmp_path, "BTCUSDT-1h-2024-02-01.csv", kline_lines(T0 + timedelta(days=31), 24, step=timedelta(hours=1)))
    key = SeriesKey.of("binance", "BTC/USDT", "1h")
    frame = read_all(tmp_path, key, T0, T0 + timedelta(days=40))
    assert len(frame) == 31 * 24 + 24
    assert frame["open_time"].is_unique


def test_monthly_candles_use_binance_1mo_name(tmp_path: Path) -> None:
    stamps = [datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3)]
    lines = [kline_lines(t, 1)[0] for t in stamps]
    write_csv(tmp_path, "BTCUSDT-1mo-2024-01.csv", lines[:1])
    write_csv(tmp_path, "BTCUSDT-1mo-2024-02.csv", lines[1:2])
    frame = read_all(tmp_path, SeriesKey.of("binance", "BTC/USDT", "1M"), T0, datetime(2024, 3, 1, tzinfo=UTC))
    assert frame["open_time"].tolist() == [pd.Timestamp(t) for t in stamps[:2]]


def test_candles_not_yet_closed_are_left_out(tmp_path: Path) -> None:
    write_csv(tmp_path, "BTCUSDT-1m-2024-01-01.csv", kline_lines(T0, 1440))
    now = T0 + timedelta(hours=12, seconds=30)
    frames = frames_of(BinanceFilesSource(tmp_path, clock=lambda: now), KEY, T0, T0 + timedelta(days=1))
    assert sum(len(f) for f in frames) == 12 * 60


def test_no_files_for_the_range_is_an_error(tmp_path: Path) -> None:
    write_csv(tmp_path, "BTCUSDT-1m-2024-01-01.csv", kline_lines(T0, 10))
    with pytest.raises(NoDataError, match=r"no BTCUSDT-1m-\*\.zip/\.csv files"):
        list(source(tmp_path).fetch_batches(KEY, T0 + timedelta(days=5), T0 + timedelta(days=6)))


def test_recursive_layout_and_make_source(tmp_path: Path) -> None:
    nested = tmp_path / "data" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
    nested.mkdir(parents=True)
    write_zip(nested, "BTCUSDT-1m-2024-01-01.zip", kline_lines(T0, 5))
    with pytest.raises(NoDataError):
        list(source(tmp_path).fetch_batches(KEY, T0, T0 + timedelta(days=1)))
    recursive = BinanceFilesSource(tmp_path, recursive=True, clock=lambda: LATER)
    assert sum(len(f) for f in frames_of(recursive, KEY, T0, T0 + timedelta(days=1))) == 5
    assert make_source(f"files:{nested}").name == f"files:{nested}"
