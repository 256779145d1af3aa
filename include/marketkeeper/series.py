"""The names every candle frame, store and output shares, and the series key: what a command needs to name a
series and its columns, importable without numpy or pandas (``marketkeeper candles --format csv`` streams a
store's own text and never builds a frame). :mod:`marketkeeper.candles` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from marketkeeper.errors import MarketkeeperError
from marketkeeper.timeframes import Timeframe

__all__ = [
    "CANDLE_COLUMNS",
    "CLOSE",
    "COUNT_COLUMNS",
    "DERIVED_COLUMNS",
    "EXPECTED_COUNT",
    "HIGH",
    "LOW",
    "OPEN",
    "OPEN_TIME",
    "OPTIONAL_COLUMNS",
    "PRICE_COLUMNS",
    "QUOTE_VOLUME",
    "REQUIRED_COLUMNS",
    "SOURCE_COUNT",
    "TRADE_COUNT",
    "VALUE_COLUMNS",
    "VOLUME",
    "CandleFrameError",
    "SeriesKey",
]

OPEN_TIME: Final = "open_time"
OPEN: Final = "open"
HIGH: Final = "high"
LOW: Final = "low"
CLOSE: Final = "close"
VOLUME: Final = "volume"
QUOTE_VOLUME: Final = "quote_volume"
TRADE_COUNT: Final = "trade_count"
#: Of a derived (downsampled) candle: the base candles present in its bucket, and those the bucket spans.
SOURCE_COUNT: Final = "source_count"
EXPECTED_COUNT: Final = "expected_count"

PRICE_COLUMNS: Final = (OPEN, HIGH, LOW, CLOSE)
#: The float columns every candle has, in storage order.
VALUE_COLUMNS: Final = (OPEN, HIGH, LOW, CLOSE, VOLUME)
REQUIRED_COLUMNS: Final = (OPEN_TIME, OPEN, HIGH, LOW, CLOSE, VOLUME)
OPTIONAL_COLUMNS: Final = (QUOTE_VOLUME, TRADE_COUNT)
#: The columns only derived candles carry (see ``marketkeeper.tiers.resample``).
DERIVED_COLUMNS: Final = (SOURCE_COUNT, EXPECTED_COUNT)
#: Every column a candle frame may have, in the order frames carry them (reads, CSV and JSON output).
CANDLE_COLUMNS: Final = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + DERIVED_COLUMNS
#: The whole-number columns (nullable ``Int64``); the others but ``open_time`` are float64.
COUNT_COLUMNS: Final = (TRADE_COUNT, *DERIVED_COLUMNS)


class CandleFrameError(MarketkeeperError, ValueError):
    """A DataFrame that cannot be read as candles (a missing column, an unconvertible value)."""


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One candle series: an exchange's symbol at one timeframe. ``str(key)`` is ``exchange:symbol:tf``."""

    exchange: str
    symbol: str
    timeframe: Timeframe

    def __post_init__(self) -> None:
        if not isinstance(self.exchange, str) or not self.exchange.strip():
            raise ValueError(f"SeriesKey.exchange must be a non-empty string, got {self.exchange!r}")
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise ValueError(f"SeriesKey.symbol must be a non-empty string, got {self.symbol!r}")
        # Accepting the spelling keeps call sites short; the field is always a Timeframe afterwards.
        object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))

    @classmethod
    def of(cls, exchange: str, symbol: str, timeframe: str | Timeframe) -> SeriesKey:
        """Build a key from a timeframe spelling or a :class:`Timeframe`."""
        return cls(exchange, symbol, Timeframe.parse(timeframe))

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}:{self.timeframe}"
