"""The market-data API for trading bots: candles from the best stored tier through a never-stale cache,
coverage, market metadata, trading signals and query figures (:class:`HistoricalDataProvider`, and
:class:`AsyncHistoricalDataProvider` for asyncio bots); ``marketkeeper serve`` puts it on HTTP."""

from marketkeeper.marketdata.aio import AsyncHistoricalDataProvider
from marketkeeper.marketdata.coverage import Coverage, IncompleteBucket, StoredRange
from marketkeeper.marketdata.errors import (
    MarketDataError,
    SignalValidationError,
    UnknownMarketError,
    UnknownTimeframeError,
)
from marketkeeper.marketdata.metrics import QueryStats
from marketkeeper.marketdata.provider import Diagnostics, HistoricalDataProvider, MarketMetadata
from marketkeeper.marketdata.routing import Market, Route
from marketkeeper.marketdata.signals import Signal

__all__ = [
    "AsyncHistoricalDataProvider",
    "Coverage",
    "Diagnostics",
    "HistoricalDataProvider",
    "IncompleteBucket",
    "Market",
    "MarketDataError",
    "MarketMetadata",
    "QueryStats",
    "Route",
    "Signal",
    "SignalValidationError",
    "StoredRange",
    "UnknownMarketError",
    "UnknownTimeframeError",
]
