"""Candles from Binance public-data kline files (data.binance.vision), checksummed, one batch per file.

Files are ``{SYMBOL}-{interval}-{YYYY-MM-DD}.zip`` (daily) or ``{SYMBOL}-{interval}-{YYYY-MM}.zip`` (monthly),
or the ``.csv`` inside them; each ``.zip`` comes with ``.zip.CHECKSUM`` (``sha256-hex  file-name``). Rows are
12 columns, with or without a header; open times are milliseconds, or microseconds (spot files from 2025).
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from marketkeeper.candles import (
    CLOSE,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    QUOTE_VOLUME,
    TRADE_COUNT,
    VOLUME,
    SeriesKey,
    normalize_frame,
)
from marketkeeper.sources.base import (
    CandleBatch,
    CandleSource,
    ChecksumMismatchError,
    CorruptFileError,
    NoDataError,
    Reject,
    SourceError,
    UnknownSymbolError,
)
from marketkeeper.timeframes import Timeframe, check_range, ensure_utc

__all__ = ["BinanceFilesSource", "binance_interval", "binance_symbol", "verify_checksum"]

log = logging.getLogger(__name__)

COLUMNS: Final = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "count", "taker_buy_base", "taker_buy_quote", "ignore",
)  # fmt: skip
_FILE_NAME: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<interval>[0-9]+[a-z]+)-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?"
    r"\.(?P<ext>zip|csv)$"
)
# 10**14 ms is the year 5138 and 10**14 us is 1973: anything above is microseconds.
_MICROSECONDS_FROM: Final = 10**14
_MICROSECONDS_TO: Final = 10**17
_HASH_CHUNK: Final = 1 << 20


def binance_symbol(symbol: str) -> str:
    """The file-name spelling of a ccxt symbol: ``BTC/USDT`` and ``BTC/USDT:USDT`` are ``BTCUSDT``."""
    pair = symbol.split(":", 1)[0]
    name = pair.replace("/", "").upper()
    if not re.fullmatch(r"[A-Z0-9_]+", name):
        raise ValueError(f"symbol {symbol!r} has no Binance file-name spelling (expected e.g. BTC/USDT)")
    return name


def binance_interval(timeframe: Timeframe) -> str:
    """The file-name spelling of a timeframe: ccxt's, except ``1M``, which Binance writes ``1mo``."""
    return "1mo" if timeframe.value == "1M" else timeframe.value


def verify_checksum(path: Path, *, source: str = "files") -> None:
    """Check ``path`` against ``path.CHECKSUM``; raise :class:`ChecksumMismatchError` naming the file.

    :raises CorruptFileError: when the checksum file is missing or malformed.
    """
    checksum_path = path.with_name(path.name + ".CHECKSUM")
    try:
        fields = checksum_path.read_text(encoding="ascii").split()
    except FileNotFoundError as exc:
        raise CorruptFileError(f"{path} has no {checksum_path.name} to verify it against", source=source) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"cannot read {checksum_path}: {exc}", source=source) from exc
    expected = fields[0].lower() if fields else ""
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise CorruptFileError(f"{checksum_path} does not hold a sha256 digest: {fields[:1]!r}", source=source)
    if len(fields) > 1 and Path(fields[1]).name != path.name:
        raise ChecksumMismatchError(
            f"{checksum_path} is the checksum of {fields[1]!r}, not of {path.name!r}", source=source
        )
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ChecksumMismatchError(
            f"checksum mismatch for {path}: sha256 is {digest.hexdigest()}, {checksum_path.name} says {expected}",
            source=source,
        )


@dataclass(frozen=True, slots=True)
class _KlineFile:
    path: Path
    period_start: datetime
    period_end: datetime
    monthly: bool


class BinanceFilesSource(CandleSource):
    """Candles of one series from the kline files in ``directory`` (one batch per file, in time order).

    A ``.zip`` wins over a ``.csv`` of the same name, a monthly file over the daily files of its month.

    :param directory: where the files are.
    :param recursive: also look in sub-directories (the layout ``data.binance.vision`` downloads have).
    :param require_checksum: refuse a ``.zip`` without its ``.CHECKSUM``.
    :param clock: the current time, to leave out candles that have not closed yet.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        recursive: bool = False,
        require_checksum: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.recursive = recursive
        self.require_checksum = require_checksum
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return f"files:{self.directory}"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        start, end = check_range(start, end)
        if start == end:
            return
        try:
            symbol = binance_symbol(key.symbol)
        except ValueError as exc:
            raise UnknownSymbolError(str(exc), source=self.name, key=key, start=start, end=end) from exc
        if not self.directory.is_dir():
            raise SourceError(f"{self.directory} is not a directory", source=self.name, key=key)
        files = self._files(symbol, binance_interval(key.timeframe), start, end)
        if not files:
            raise NoDataError(
                f"no {symbol}-{binance_interval(key.timeframe)}-*.zip/.csv files in {self.directory} overlap the range",
                source=self.name,
                key=key,
                start=start,
                end=end,
            )
        tf = key.timeframe
        closed_before = tf.floor(ensure_utc(self._clock(), "clock()"))
        lo = _ns(start)
        hi = _ns(min(end, closed_before))
        for kline in files:
            frame, rejects = self._read(kline, key)
            times = frame[OPEN_TIME].dt.as_unit("ns").array.asi8
            frame = frame[(times >= lo) & (times < hi)].reset_index(drop=True)
            # A reject without a readable time belongs to its file's first period, so that runs over a
            # partition of the range report it exactly once.
            kept = tuple(
                r
                for r in rejects
                if (r.open_time is not None and start <= r.open_time < end)
                or (r.open_time is None and start <= kline.period_start < end)
            )
            if len(frame) or kept:
                yield CandleBatch(frame, kept)

    def _files(self, symbol: str, interval: str, start: datetime, end: datetime) -> list[_KlineFile]:
        pattern = f"{symbol}-{interval}-*"
        paths = self.directory.rglob(pattern) if self.recursive else self.directory.glob(pattern)
        found: dict[tuple[str, bool], _KlineFile] = {}
        for path in sorted(paths):
            match = _FILE_NAME.match(path.name)
            if not match or match["symbol"] != symbol or match["interval"] != interval or not path.is_file():
                continue
            year, month = int(match["year"]), int(match["month"])
            monthly = match["day"] is None
            if monthly:
                period_start = datetime(year, month, 1, tzinfo=UTC)
                period_end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            else:
                period_start = datetime(year, month, int(match["day"]), tzinfo=UTC)
                period_end = Timeframe.parse("1d").next_open(period_start)
            if not (period_start < end and period_end > start):
                continue
            stem = path.name.rsplit(".", 1)[0]
            kline = _KlineFile(path, period_start, period_end, monthly)
            previous = found.get((stem, monthly))
            if previous is None or path.suffix == ".zip":
                found[(stem, monthly)] = kline
        months = {(k.period_start.year, k.period_start.month) for k in found.values() if k.monthly}
        chosen = [k for k in found.values() if k.monthly or (k.period_start.year, k.period_start.month) not in months]
        return sorted(chosen, key=lambda k: k.period_start)

    def _read(self, kline: _KlineFile, key: SeriesKey) -> tuple[pd.DataFrame, list[Reject]]:
        path = kline.path
        if path.suffix == ".zip":
            checksum = path.with_name(path.name + ".CHECKSUM")
            if self.require_checksum or checksum.exists():
                verify_checksum(path, source=self.name)
            try:
                with zipfile.ZipFile(path) as archive:
                    members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
                    if len(members) != 1:
                        raise CorruptFileError(
                            f"{path} should hold one .csv, it holds {archive.namelist()}",
                            source=self.name,
                            key=key,
                        )
                    data = archive.read(members[0])
            except (zipfile.BadZipFile, EOFError, zlib.error, ValueError) as exc:
                raise CorruptFileError(
                    f"{path} is truncated or corrupt: {type(exc).__name__}: {exc}", source=self.name, key=key
                ) from exc
        else:
            data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CorruptFileError(f"{path} is not UTF-8 text: {exc}", source=self.name, key=key) from exc
        return _parse_klines(text, path.name, self.name)


def _parse_klines(text: str, file: str, source: str) -> tuple[pd.DataFrame, list[Reject]]:
    """Parse kline rows; rows that are not 12 numeric columns come back as rejects with their line numbers."""
    times: list[int] = []
    values: list[tuple[float, float, float, float, float, float]] = []
    counts: list[int] = []
    rejects: list[Reject] = []
    file_unit_us: bool | None = None
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        raw = line.strip()
        if not raw:
            continue
        fields = raw.split(",")
        if first:
            first = False
            if fields[0].strip().strip('"').lower().startswith("open"):
                continue  # the header row newer files have
        stamp: int | None = None
        try:
            if len(fields) != len(COLUMNS):
                raise ValueError(f"expected {len(COLUMNS)} columns, got {len(fields)}")
            stamp = _int(fields[0], "open_time")
            if not 0 <= stamp < _MICROSECONDS_TO:
                raise ValueError(f"open_time {stamp} is neither milliseconds nor microseconds since 1970")
            is_us = stamp >= _MICROSECONDS_FROM
            if file_unit_us is None:
                file_unit_us = is_us
            elif is_us != file_unit_us:
                raise ValueError(
                    "open_time is in {} but the file's first row is in {}".format(
                        "microseconds" if is_us else "milliseconds", "microseconds" if file_unit_us else "ms"
                    )
                )
            row = (
                _float(fields[1], "open"),
                _float(fields[2], "high"),
                _float(fields[3], "low"),
                _float(fields[4], "close"),
                _float(fields[5], "volume"),
                _float(fields[7], "quote_volume"),
            )
            count = _int(fields[8], "count")
        except (ValueError, OverflowError) as exc:
            open_time = _stamp_time(stamp) if stamp is not None else None
            rejects.append(
                Reject(source=source, reason=str(exc), raw=line, file=file, line=number, open_time=open_time)
            )
            continue
        times.append(stamp * (1000 if is_us else 1_000_000))
        values.append(row)
        counts.append(count)
    table = np.array(values, dtype=np.float64).reshape(-1, 6)
    frame = pd.DataFrame(
        {
            OPEN_TIME: pd.to_datetime(np.array(times, dtype=np.int64), unit="ns", utc=True),
            OPEN: table[:, 0],
            HIGH: table[:, 1],
            LOW: table[:, 2],
            CLOSE: table[:, 3],
            VOLUME: table[:, 4],
            QUOTE_VOLUME: table[:, 5],
            TRADE_COUNT: pd.array(counts, dtype="Int64"),
        }
    )
    return normalize_frame(frame), rejects


def _int(value: str, column: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{column} is not an integer: {value.strip()!r}") from None


def _float(value: str, column: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ValueError(f"{column} is not a number: {value.strip()!r}") from None


def _stamp_time(stamp: int) -> datetime | None:
    try:
        unit = "us" if stamp >= _MICROSECONDS_FROM else "ms"
        return pd.Timestamp(stamp, unit=unit, tz="UTC").to_pydatetime()
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return None  # the time itself is what is malformed; the reject's reason says so


def _ns(dt: datetime) -> int:
    return int(pd.Timestamp(dt).as_unit("ns").value)
