"""The candle stores' errors: each names the store, the operation, the series and the range."""

from __future__ import annotations

from datetime import datetime

from marketkeeper.errors import MarketkeeperError, series_context
from marketkeeper.series import SeriesKey

__all__ = ["CandleStoreError", "CandleStoreMissingError", "CandleStoreUnavailableError"]


class CandleStoreError(MarketkeeperError):
    """A candle store operation failed; the message names the store, the operation, the series and range.

    :ivar store: the store's name, e.g. ``InfluxDB candle store (http://127.0.0.1:8086, database 'x')``.
    :ivar operation: ``write``, ``read``, ``delete_range``...
    :ivar key: the series, when the operation had one.
    :ivar start: the start of the range (inclusive), when the operation had one.
    :ivar end: the end of the range (exclusive), when the operation had one.
    """

    def __init__(
        self,
        cause: str,
        *,
        store: str,
        operation: str,
        key: SeriesKey | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        where = [store, operation, *series_context(key, start, end)]
        super().__init__(f"{' | '.join(where)}: {cause}")
        self.store = store
        self.operation = operation
        self.key = key
        self.start = start
        self.end = end
        self.cause = cause


class CandleStoreUnavailableError(CandleStoreError):
    """The store's server could not be reached; retrying later is the remedy."""


class CandleStoreMissingError(CandleStoreError):
    """The store's database or table does not exist: ``marketkeeper db upgrade`` creates it, a retry cannot."""
