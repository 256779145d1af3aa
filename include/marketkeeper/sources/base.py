"""The candle source interface: closed candles of one series over ``[start, end)``, in chunks, and its errors.

Sources never drop a row they cannot read: they hand it back as a :class:`Reject` so the ingestion quality
gate can quarantine it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import pandas as pd

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError, series_context

__all__ = [
    "CandleBatch",
    "CandleSource",
    "ChecksumMismatchError",
    "CorruptFileError",
    "NoDataError",
    "Reject",
    "SourceError",
    "SourceUnavailableError",
    "UnknownExchangeError",
    "UnknownSymbolError",
    "UnsupportedTimeframeError",
    "rejects_frame",
]


class SourceError(MarketkeeperError):
    """A source could not deliver candles; the message names the source, the series and the range."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        key: SeriesKey | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        context = [f"source {source}", *series_context(key, start, end)]
        super().__init__(f"{message} ({', '.join(context)})")
        self.source = source
        self.key = key
        self.start = start
        self.end = end


class SourceUnavailableError(SourceError):
    """The source did not answer (network down, rate limited) even after the retries."""


class UnknownExchangeError(SourceError):
    """The exchange id is not one the source knows."""


class UnknownSymbolError(SourceError):
    """The exchange does not list the symbol."""


class UnsupportedTimeframeError(SourceError):
    """The source has no candles at that timeframe."""


class NoDataError(SourceError):
    """The source holds nothing for the requested series and range (e.g. no files downloaded)."""


class CorruptFileError(SourceError):
    """A file is truncated or not what its name says; the message names the file."""


class ChecksumMismatchError(CorruptFileError):
    """A file's SHA-256 differs from its ``.CHECKSUM``; the message names the file and both digests."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A row a source could not turn into a candle, kept verbatim with where it came from and why."""

    source: str
    reason: str
    raw: str
    file: str | None = None
    line: int | None = None
    #: The row's open time when it could be read, for quarantine keyed by series and time.
    open_time: datetime | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else self.source
        return f"{where}: {self.reason}: {self.raw!r}"


class CandleBatch(NamedTuple):
    """One chunk of a fetch: canonical candle rows (see :mod:`marketkeeper.candles`) and the rows rejected."""

    frame: pd.DataFrame
    rejects: tuple[Reject, ...] = ()


def rejects_frame(rejects: Sequence[Reject]) -> pd.DataFrame:
    """The rejects as a DataFrame (source, file, line, open_time, reason, raw), e.g. for quarantine."""
    return pd.DataFrame(
        {
            "source": pd.Series([r.source for r in rejects], dtype="str"),
            "file": pd.Series([r.file for r in rejects], dtype="object"),
            "line": pd.Series([r.line for r in rejects], dtype="Int64"),
            "open_time": pd.Series([r.open_time for r in rejects], dtype=pd.DatetimeTZDtype(unit="ns", tz="UTC")),
            "reason": pd.Series([r.reason for r in rejects], dtype="str"),
            "raw": pd.Series([r.raw for r in rejects], dtype="str"),
        }
    )


class CandleSource(abc.ABC):
    """Where candles come from. Implementations yield only CLOSED candles with open times in ``[start, end)``,
    in ascending chunks, as canonical frames.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short label for logs, errors and ``quarantined_candles.source`` (e.g. ``ccxt:binance``)."""

    @abc.abstractmethod
    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        """Yield the closed candles of ``key`` with open times in ``[start, end)`` and the rows rejected.

        :param key: the series to read.
        :param start: inclusive, timezone-aware.
        :param end: exclusive, timezone-aware.
        :raises SourceError: (a subclass) naming the source, the series and the range.
        """
