"""Parsing the lines of one Binance kline file into bounded chunks of candles and rejects.

Every row is checked against the period the file's name declares: a row outside it is a reject, and a file
with no row inside it fails, naming the likely cause (seconds instead of milliseconds, a misnamed file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import pandas as pd

from marketkeeper.candles import SeriesKey, candle_frame
from marketkeeper.errors import format_range
from marketkeeper.sources.base import CorruptFileError, Reject
from marketkeeper.timeframes import to_ns

__all__ = ["CHUNK_ROWS", "COLUMNS", "KlinePeriod", "likely_cause", "parse_kline_lines"]

COLUMNS: Final = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "count", "taker_buy_base", "taker_buy_quote", "ignore",
)  # fmt: skip
#: Rows (candles and rejects) per yielded chunk: bounds the memory one chunk takes.
CHUNK_ROWS: Final = 100_000
# 10**14 ms is the year 5138 and 10**14 us is 1973: anything above is microseconds.
_MICROSECONDS_FROM: Final = 10**14
_MICROSECONDS_TO: Final = 10**17
_NS_PER_S: Final = 1_000_000_000
_NS_PER_MS: Final = 1_000_000
_NS_PER_US: Final = 1_000
_BOM: Final = b"\xef\xbb\xbf"
_NUMERIC_FIELDS: Final = {
    0: ("open_time", "an integer"), 1: ("open", "a number"), 2: ("high", "a number"), 3: ("low", "a number"),
    4: ("close", "a number"), 5: ("volume", "a number"), 7: ("quote_volume", "a number"), 8: ("count", "an integer"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class KlinePeriod:
    """What a kline file's name declares: its name, the ``[start, end)`` its rows must open in, how many."""

    file: str
    start: datetime
    end: datetime
    #: The most data rows the file may hold before it is refused (its candles, with room for duplicates).
    max_rows: int

    def __str__(self) -> str:
        return format_range(self.start, self.end)


def parse_kline_lines(
    lines: Iterable[tuple[int, bytes]],
    period: KlinePeriod,
    *,
    source: str,
    key: SeriesKey | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[pd.DataFrame, list[Reject]]]:
    """Parse numbered raw lines (without their ``\\n``) of one file, in chunks of at most ``chunk_rows`` rows.

    Rows that are not 12 numeric columns, or whose open time is outside ``period``, come back as rejects with
    the line verbatim (undecodable bytes backslash-escaped). A reject gets an ``open_time`` only when its time
    lies inside the period; others belong to the whole file.

    :raises CorruptFileError: the first line is not UTF-8 (not a text file), the file holds more rows than
        ``period.max_rows``, or it has rows with an open time and none inside the period.
    """
    lo, hi = to_ns(period.start), to_ns(period.end)
    chunk = _Chunk()
    inside = outside = rows = 0
    first_outside: tuple[int, int] | None = None
    file_unit_us: bool | None = None
    header_checked = False
    for number, data in lines:
        if data.endswith(b"\r"):
            data = data[:-1]
        if not data.strip():
            continue
        if not header_checked:
            data = data.removeprefix(_BOM)
        undecodable: UnicodeDecodeError | None = None
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not header_checked:
                raise CorruptFileError(f"{period.file} is not UTF-8 text: {exc}", source=source, key=key) from exc
            undecodable, line = exc, data.decode("utf-8", "backslashreplace")
        fields = line.strip().split(",")
        if not header_checked:
            header_checked = True
            if fields[0].strip().strip('"').lower().startswith("open"):
                continue  # the header row newer files have
        rows += 1
        if rows > period.max_rows:
            raise CorruptFileError(
                f"{period.file} holds more than {period.max_rows} rows, more than its period {period} can",
                source=source,
                key=key,
            )
        if undecodable is not None:
            chunk.reject(source, period.file, number, f"line is not UTF-8 text: {undecodable}", line, None)
            continue
        in_period: int | None = None  # the row's open time, once known to be inside the period
        try:
            if len(fields) != len(COLUMNS):
                raise ValueError(f"expected {len(COLUMNS)} columns, got {len(fields)}")
            if not line.isascii() or "_" in line:
                _refuse_odd_digits(fields)
            stamp = _int(fields[0], "open_time")
            is_us = _MICROSECONDS_FROM <= stamp < _MICROSECONDS_TO
            ns = stamp * (_NS_PER_US if is_us else _NS_PER_MS) if 0 <= stamp < _MICROSECONDS_TO else None
            if ns is None or not lo <= ns < hi:
                outside += 1
                first_outside = first_outside or (number, stamp)
                raise ValueError(
                    f"line {number} of {period.file}: open_time {stamp} ({_describe(stamp)}) is outside "
                    f"{period}, the period the file's name declares; {likely_cause(stamp, lo, hi)}"
                )
            inside += 1
            in_period = ns
            if file_unit_us is None:
                file_unit_us = is_us
            elif is_us != file_unit_us:
                raise ValueError(f"open_time is in {_unit(is_us)} but the file's first row is in {_unit(file_unit_us)}")
            values = (
                _float(fields[1], "open"),
                _float(fields[2], "high"),
                _float(fields[3], "low"),
                _float(fields[4], "close"),
                _float(fields[5], "volume"),
                _float(fields[7], "quote_volume"),
            )
            count = _int(fields[8], "count")
        except (ValueError, OverflowError) as exc:
            open_time = _time(in_period) if in_period is not None else None
            chunk.reject(source, period.file, number, str(exc), line, open_time)
        else:
            chunk.add(ns, values, count)
        # Until a row inside the period is seen, rejects wait: a file with none fails instead of yielding them.
        if inside and chunk.size >= chunk_rows:
            yield chunk.take()
    if outside and not inside and first_outside is not None:
        number, stamp = first_outside
        raise CorruptFileError(
            f"{period.file}: all {outside} row(s) with an open time lie outside {period}, the period its name "
            f"declares (first: line {number}, open_time {stamp}, {_describe(stamp)}); {likely_cause(stamp, lo, hi)}",
            source=source,
            key=key,
        )
    if chunk.size:
        yield chunk.take()


def likely_cause(stamp: int, lo: int, hi: int) -> str:
    """Why an open time ``stamp`` (as written) misses the period ``[lo, hi)`` (ns): the guess for the message."""
    if stamp < 0:
        return "open times are negative"
    if lo <= stamp * _NS_PER_S < hi:
        return "open times look like seconds, expected milliseconds or microseconds"
    if lo <= stamp < hi:
        return "open times look like nanoseconds, expected milliseconds or microseconds"
    if stamp < _MICROSECONDS_TO:
        return "the row belongs to another period: is the file misnamed, or holding another file's rows?"
    return "open times are neither milliseconds nor microseconds since 1970"


class _Chunk:
    """The rows of one chunk in progress, as plain lists (cheap to append)."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[tuple[float, float, float, float, float, float]] = []
        self.counts: list[int] = []
        self.rejects: list[Reject] = []

    def _clear(self) -> None:
        self.times, self.values, self.counts, self.rejects = [], [], [], []

    @property
    def size(self) -> int:
        return len(self.times) + len(self.rejects)

    def add(self, ns: int, values: tuple[float, float, float, float, float, float], count: int) -> None:
        self.times.append(ns)
        self.values.append(values)
        self.counts.append(count)

    def reject(self, source: str, file: str, line: int, reason: str, raw: str, open_time: datetime | None) -> None:
        self.rejects.append(Reject(source=source, reason=reason, raw=raw, file=file, line=line, open_time=open_time))

    def take(self) -> tuple[pd.DataFrame, list[Reject]]:
        table = np.array(self.values, dtype=np.float64).reshape(-1, 6)
        frame = candle_frame(
            np.array(self.times, dtype=np.int64), table.T[:5], quote_volume=table[:, 5], trade_count=self.counts
        )
        rejects = self.rejects
        self._clear()
        return frame, rejects


def _refuse_odd_digits(fields: list[str]) -> None:
    """Refuse what ``int()``/``float()`` would read but Binance never writes: ``1_000``, non-ASCII digits."""
    for index, (column, kind) in _NUMERIC_FIELDS.items():
        text = fields[index].strip()
        if not text.isascii() or "_" in text:
            raise ValueError(f"{column} is not {kind}: {text!r}")


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


def _unit(us: bool) -> str:
    return "microseconds" if us else "milliseconds"


def _time(ns: int) -> datetime:
    return pd.Timestamp(ns, unit="ns", tz="UTC").to_pydatetime()


def _describe(stamp: int) -> str:
    """The time ``stamp`` stands for when read as milliseconds or microseconds, for messages."""
    if not 0 <= stamp < _MICROSECONDS_TO:
        return "not a time in milliseconds or microseconds"
    ns = stamp * (_NS_PER_US if stamp >= _MICROSECONDS_FROM else _NS_PER_MS)
    if ns > np.iinfo(np.int64).max:
        return "past 2262"
    unit = "us" if stamp >= _MICROSECONDS_FROM else "ms"
    return f"{_time(ns).isoformat()} read as {unit}"
