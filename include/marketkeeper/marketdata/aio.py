"""The asyncio twin of :class:`~marketkeeper.marketdata.provider.HistoricalDataProvider`, for bots built on
asyncio.

Each call runs the synchronous provider in a bounded thread pool of this object's own. The stores' drivers
(psycopg, requests, redis-py) are synchronous and release the GIL while they wait on the network, so threads
overlap the waits as an async driver would, while routing, caching, figures and errors stay one
implementation that the sync API, the HTTP server and the async API share; a second async driver stack
(asyncpg, aiohttp, redis.asyncio) would be a second read path to keep identical. The pool is bounded so a
burst of coroutines cannot open more store connections than ``max_workers``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd

from marketkeeper.marketdata.coverage import Coverage
from marketkeeper.marketdata.provider import Diagnostics, HistoricalDataProvider, MarketMetadata
from marketkeeper.marketdata.routing import Market
from marketkeeper.marketdata.signals import Signal

__all__ = ["AsyncHistoricalDataProvider"]

T = TypeVar("T")
_DONE = object()


class AsyncHistoricalDataProvider:
    """``await``-able :class:`HistoricalDataProvider`: same methods, same results, same errors.

    :param provider: the provider to run (closed by :meth:`aclose`).
    :param max_workers: calls in flight at once; further calls wait for a free thread.
    """

    def __init__(self, provider: HistoricalDataProvider, *, max_workers: int = 8) -> None:
        self.provider = provider
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="marketdata")

    @classmethod
    def from_settings(cls, *, max_workers: int = 8, **options: Any) -> AsyncHistoricalDataProvider:
        """Built like :meth:`HistoricalDataProvider.from_settings` (the environment of the CLI)."""
        return cls(HistoricalDataProvider.from_settings(**options), max_workers=max_workers)

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    async def markets(self) -> list[Market]:
        return await self._run(self.provider.markets)

    async def metadata(self, exchange: str, symbol: str | None = None) -> MarketMetadata:
        return await self._run(self.provider.metadata, exchange, symbol)

    async def get_candles(
        self, exchange: str, symbol: str, timeframe: str, start: datetime, end: datetime, *, complete_only: bool = False
    ) -> pd.DataFrame:
        return await self._run(
            self.provider.get_candles, exchange, symbol, timeframe, start, end, complete_only=complete_only
        )

    async def iter_candles(
        self, exchange: str, symbol: str, timeframe: str, start: datetime, end: datetime, **options: Any
    ) -> AsyncIterator[pd.DataFrame]:
        """The frames of :meth:`HistoricalDataProvider.iter_candles`, each fetched in the pool."""
        frames = await self._run(self.provider.iter_candles, exchange, symbol, timeframe, start, end, **options)
        try:
            while True:
                frame = await self._run(next, frames, _DONE)
                if frame is _DONE:
                    return
                yield frame
        finally:
            await self._run(frames.close)

    async def coverage(
        self, exchange: str, symbol: str, timeframe: str, start: datetime | None = None, end: datetime | None = None
    ) -> Coverage:
        return await self._run(self.provider.coverage, exchange, symbol, timeframe, start, end)

    async def store_signal(
        self,
        exchange: str,
        symbol: str,
        strategy_or_bot: str,
        kind: str,
        value: float,
        confidence: float,
        time: datetime,
    ) -> Signal:
        return await self._run(
            self.provider.store_signal, exchange, symbol, strategy_or_bot, kind, value, confidence, time
        )

    async def get_signals(
        self, exchange: str, symbol: str, start: datetime, end: datetime, **options: Any
    ) -> list[Signal]:
        return await self._run(self.provider.get_signals, exchange, symbol, start, end, **options)

    async def diagnostics(self) -> Diagnostics:
        return await self._run(self.provider.diagnostics)

    async def aclose(self) -> None:
        """Close the provider and the pool (waiting for calls in flight)."""
        await self._run(self.provider.close)
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> AsyncHistoricalDataProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
