"""What the provider tells about a market and about itself: a declared market's first and last candle and
30-day figures (:class:`MarketMetadata`), and store reachability with the query figures (:class:`Diagnostics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from marketkeeper.marketdata.metrics import QueryStats
from marketkeeper.marketdata.routing import Market

if TYPE_CHECKING:
    from marketkeeper.health import StoreHealth

__all__ = ["METADATA_WINDOW", "Diagnostics", "MarketMetadata"]

#: The window of :meth:`HistoricalDataProvider.metadata`'s figures, ending at the newest candle.
METADATA_WINDOW: Final = timedelta(days=30)


@dataclass(frozen=True)
class MarketMetadata:
    """A declared market and its finest series' figures: first and last candle, and over the 30 days up to the
    last candle the lowest and highest close and the summed volume (``None`` without candles)."""

    market: Market
    first_open_time: datetime | None
    last_open_time: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    min_close: float | None
    max_close: float | None
    volume: float | None

    def as_dict(self) -> dict[str, object]:
        def iso(dt: datetime | None) -> str | None:
            return None if dt is None else dt.isoformat()

        return {
            **self.market.as_dict(),
            "first_open_time": iso(self.first_open_time),
            "last_open_time": iso(self.last_open_time),
            "window_start": iso(self.window_start),
            "window_end": iso(self.window_end),
            "min_close_30d": self.min_close,
            "max_close_30d": self.max_close,
            "volume_30d": self.volume,
        }


@dataclass(frozen=True)
class Diagnostics:
    """Store reachability (:func:`marketkeeper.health.check_stores`), the query figures and the cache settings."""

    stores: tuple[StoreHealth, ...]
    stats: QueryStats
    cache_enabled: bool
    cache_ttl_s: float
    cache_max_entry_bytes: int

    @property
    def reachable(self) -> bool:
        return all(s.ok for s in self.stores)

    def as_dict(self) -> dict[str, object]:
        return {
            "reachable": self.reachable,
            "stores": [s.as_dict() for s in self.stores],
            **self.stats.as_dict(),
            "cache_enabled": self.cache_enabled,
            "cache_ttl_s": self.cache_ttl_s,
            "cache_max_entry_bytes": self.cache_max_entry_bytes,
        }
