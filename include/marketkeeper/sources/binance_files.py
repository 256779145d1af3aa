"""Candles from Binance public-data kline files (data.binance.vision), checksummed, streamed in bounded chunks.

Files are ``{SYMBOL}-{interval}-{YYYY-MM-DD}.zip`` (daily) or ``{SYMBOL}-{interval}-{YYYY-MM}.zip`` (monthly),
or the ``.csv`` inside them; each ``.zip`` comes with ``.zip.CHECKSUM`` (``sha256-hex  file-name``). Rows are
12 columns, with or without a header; open times are milliseconds, or microseconds (spot files from 2025).
A file may inflate to no more than its period's candles can take (:func:`max_file_bytes`): a zip bomb fails.
Rows are parsed by :mod:`marketkeeper.sources.kline_parse`.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import pandas as pd

from marketkeeper.candles import OPEN_TIME, SeriesKey
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
from marketkeeper.sources.kline_parse import KlinePeriod, parse_kline_lines
from marketkeeper.timeframes import Timeframe, check_range, ensure_utc, to_ns

__all__ = [
    "MAX_ROW_BYTES",
    "BinanceFilesSource",
    "binance_interval",
    "binance_symbol",
    "capped_lines",
    "max_file_bytes",
    "verify_checksum",
]

_FILE_NAME: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<interval>[0-9]+[a-z]+)-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?"
    r"\.(?P<ext>zip|csv)$"
)
_HASH_CHUNK: Final = 1 << 20
_READ_CHUNK: Final = 1 << 20
#: The most bytes one kline row may take: real rows are 100 to 200, with microsecond times and 8 decimals.
MAX_ROW_BYTES: Final = 512
# However few candles a period holds, a file may take this much (a header, a BOM, stray blank lines).
_MIN_FILE_BYTES: Final = 64 * 1024
_ONE_DAY: Final = Timeframe.parse("1d")
_ONE_MONTH: Final = Timeframe.parse("1M")


def max_file_bytes(candles: int) -> int:
    """The most bytes a kline file holding at most ``candles`` rows may inflate to (its header included)."""
    return max(_MIN_FILE_BYTES, (candles + 1) * MAX_ROW_BYTES)


def capped_lines(
    stream: IO[bytes], *, limit: int, file: str, source: str, key: SeriesKey | None = None
) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of ``stream`` (without ``\n``), read in chunks; fail once more than ``limit`` bytes come.

    Never holds more than ``limit`` plus one chunk in memory, whatever a zip header claims.

    :raises CorruptFileError: naming ``file``, the limit and how many bytes were read.
    """
    total = 0
    number = 0
    pending = b""
    while chunk := stream.read(_READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise CorruptFileError(
                f"{file} inflates to more than {limit} bytes (read {total} so far), the most its period's "
                "candles can take: a zip bomb or not a kline file",
                source=source,
                key=key,
            )
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            yield number, line
    if pending:
        yield number + 1, pending


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
    """Candles of one series from the kline files in ``directory`` (in time order, at least one batch per file).

    A ``.zip`` wins over a ``.csv`` of the same name, a monthly file over the daily files of its month. Rows
    outside the period a file's name declares are rejects; a file whose name is not a date, that has no row in
    its period, or that inflates beyond :func:`max_file_bytes` fails the fetch with :class:`CorruptFileError`.

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
        files = self._files(symbol, binance_interval(key.timeframe), start, end, key)
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
        lo = to_ns(start)
        hi = to_ns(min(end, closed_before))
        for kline in files:
            # Each file is read whole, whatever the range: rows outside it are other runs' to keep, but a
            # file with no row in its period must fail every run that reads it.
            for frame, rejects in self._read(kline, key):
                times = frame[OPEN_TIME].dt.as_unit("ns").array.asi8
                frame = frame[(times >= lo) & (times < hi)].reset_index(drop=True)
                kept = tuple(r for r in rejects if _reported_in(r, kline, start, end))
                if len(frame) or kept:
                    yield CandleBatch(frame, kept)

    def _files(self, symbol: str, interval: str, start: datetime, end: datetime, key: SeriesKey) -> list[_KlineFile]:
        pattern = f"{symbol}-{interval}-*"
        paths = self.directory.rglob(pattern) if self.recursive else self.directory.glob(pattern)
        found: dict[tuple[str, bool], _KlineFile] = {}
        for path in sorted(paths):
            match = _FILE_NAME.match(path.name)
            if not match or match["symbol"] != symbol or match["interval"] != interval or not path.is_file():
                continue
            monthly = match["day"] is None
            period_start, period_end = self._period(path, match, key)
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

    def _period(self, path: Path, match: re.Match[str], key: SeriesKey) -> tuple[datetime, datetime]:
        """The ``[start, end)`` a file's name declares; a name that is no date fails (it may hide data)."""
        year, month, day = int(match["year"]), int(match["month"]), match["day"]
        try:
            if day is None:
                opened = datetime(year, month, 1, tzinfo=UTC)
                return opened, _ONE_MONTH.next_open(opened)
            opened = datetime(year, month, int(day), tzinfo=UTC)
            return opened, _ONE_DAY.next_open(opened)
        except (ValueError, OverflowError) as exc:
            declared = f"{match['year']}-{match['month']}" + (f"-{day}" if day is not None else "")
            raise CorruptFileError(
                f"{path} is named for {declared}, which is not a date ({exc}); rename or remove it",
                source=self.name,
                key=key,
            ) from exc

    def _read(self, kline: _KlineFile, key: SeriesKey) -> Iterator[tuple[pd.DataFrame, list[Reject]]]:
        path = kline.path
        candles = max(1, key.timeframe.count(kline.period_start, kline.period_end))
        limit = max_file_bytes(candles)
        period = KlinePeriod(path.name, kline.period_start, kline.period_end, max_rows=2 * candles + 16)
        if path.suffix == ".zip":
            checksum = path.with_name(path.name + ".CHECKSUM")
            if self.require_checksum or checksum.exists():
                verify_checksum(path, source=self.name)
        with ExitStack() as stack:
            stream = self._open(path, limit, stack, key)
            lines = capped_lines(stream, limit=limit, file=str(path), source=self.name, key=key)
            try:
                yield from parse_kline_lines(lines, period, source=self.name, key=key)
            except SourceError:
                raise
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as exc:
                raise CorruptFileError(
                    f"{path} is truncated or corrupt: {type(exc).__name__}: {exc}", source=self.name, key=key
                ) from exc

    def _open(self, path: Path, limit: int, stack: ExitStack, key: SeriesKey) -> IO[bytes]:
        """The bytes of a ``.csv``, or of the one ``.csv`` inside a ``.zip``, after checking their declared size."""
        try:
            if path.suffix != ".zip":
                size = path.stat().st_size
                if size > limit:
                    raise CorruptFileError(
                        f"{path} is {size} bytes, more than the {limit} its period's candles can take",
                        source=self.name,
                        key=key,
                    )
                return stack.enter_context(path.open("rb"))
            archive = stack.enter_context(zipfile.ZipFile(path))
            members = [info for info in archive.infolist() if info.filename.lower().endswith(".csv")]
            if len(members) != 1:
                raise CorruptFileError(
                    f"{path} should hold one .csv, it holds {archive.namelist()}", source=self.name, key=key
                )
            member = members[0]
            if member.file_size > limit:
                raise CorruptFileError(
                    f"{path} inflates to {member.file_size} bytes ({member.filename}), more than the {limit} its "
                    "period's candles can take: a zip bomb or not a kline file",
                    source=self.name,
                    key=key,
                )
            return stack.enter_context(archive.open(member))
        except SourceError:
            raise
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, RuntimeError, NotImplementedError) as exc:
            # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile cannot read.
            raise CorruptFileError(
                f"{path} is truncated or corrupt: {type(exc).__name__}: {exc}", source=self.name, key=key
            ) from exc
        except OSError as exc:
            raise CorruptFileError(f"cannot read {path}: {exc}", source=self.name, key=key) from exc


def _reported_in(reject: Reject, kline: _KlineFile, start: datetime, end: datetime) -> bool:
    """Whether a run over ``[start, end)`` reports ``reject``: exactly one run of a partition of the range does.

    A reject with a time inside its file's period belongs to that time; one without (unreadable, or outside
    the period, so not to be trusted) belongs to its file's first instant.
    """
    at = reject.open_time if reject.open_time is not None else kline.period_start
    return start <= at < end
