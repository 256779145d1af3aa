"""The historical-data provider trading bots read candles through: routing to the best stored tier, the
never-stale Redis cache, streaming, coverage, market metadata, signals and query figures.

Every read goes through the candle store's own read API (:meth:`~marketkeeper.stores.base.CandleStore.read`,
``iter_frames``, ``open_times``): there is no second SQL or InfluxQL path. One provider is safe to share
between threads (the stores' engine, session and Redis pools are).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import pandas as pd

from marketkeeper.candles import CLOSE, VOLUME, SeriesKey
from marketkeeper.closing import Closing
from marketkeeper.marketdata import coverage as cov
from marketkeeper.marketdata import reads
from marketkeeper.marketdata.cache import DEFAULT_LOCAL_BYTES, CandleQueryCache
from marketkeeper.marketdata.metadata import METADATA_WINDOW, Diagnostics, MarketMetadata
from marketkeeper.marketdata.metrics import QueryMetrics
from marketkeeper.marketdata.routing import Market, Route, Router
from marketkeeper.marketdata.signals import Signal, SignalStore, signal_store
from marketkeeper.markets import MarketSpec
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.stores.base import CHUNK_ROWS
from marketkeeper.timeframes import check_range, ensure_utc, to_ns

if TYPE_CHECKING:
    from marketkeeper.settings import Settings

__all__ = [
    "DEFAULT_CACHE_MAX_ENTRY_BYTES",
    "DEFAULT_CACHE_TTL",
    "Diagnostics",
    "HistoricalDataProvider",
    "MarketMetadata",
]  # Diagnostics and MarketMetadata live in marketdata.metadata; importable from here as before

log = logging.getLogger(__name__)

#: Seconds a cached query lives (versions make entries unreachable after a write; the TTL frees the memory).
DEFAULT_CACHE_TTL: Final = 3600.0
#: Larger answers are served but not cached: a year of 1m candles encodes to about 38 MB.
DEFAULT_CACHE_MAX_ENTRY_BYTES: Final = 64 * 1024 * 1024


class HistoricalDataProvider(Closing):
    """Candles, coverage, metadata and signals of the declared markets, from the stores ``config`` names.

    :param config: where the stores are (:meth:`from_settings`: the CLI's environment; inside Airflow tasks
        :meth:`from_airflow`: the Connections).
    :param markets: the markets declaration (default: :func:`marketkeeper.services.markets.declared_markets`).
    :param cache: use the Redis cache when Redis is configured.
    :param cache_ttl: seconds a cached query lives.
    :param cache_max_entry_bytes: answers above this size are not cached.
    :param cache_local_bytes: memory for the frames of recent cache entries in this process, served after the
        version check in Redis (0: every hit moves the answer out of Redis).
    :param clock: the current time (closed buckets, default windows); tests pass a fixed one.
    """

    def __init__(
        self,
        config: StoreConfig,
        *,
        markets: Sequence[MarketSpec] | None = None,
        cache: bool = True,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_max_entry_bytes: int = DEFAULT_CACHE_MAX_ENTRY_BYTES,
        cache_local_bytes: int = DEFAULT_LOCAL_BYTES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if markets is None:
            from marketkeeper.services.markets import declared_markets

            markets = declared_markets()
        self.config = config
        self.metrics = QueryMetrics()
        self._router = Router(markets)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stores = StoreSet.open(config)
        self._cache_ttl = cache_ttl
        self._cache_max = cache_max_entry_bytes
        self._cache: CandleQueryCache | None = None
        if cache and self._stores.cache is not None:
            self._cache = CandleQueryCache(
                self._stores.cache,
                ttl=cache_ttl,
                max_entry_bytes=cache_max_entry_bytes,
                local_bytes=cache_local_bytes,
                on_lookup=self.metrics.cache_lookup,
                on_error=self.metrics.cache_error,
            )
        self._signals: SignalStore = signal_store(self._stores)
        self._written_tiers: set[SeriesKey] = set()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: object) -> HistoricalDataProvider:
        """The provider over the stores the environment names, as the CLI uses them (``DATABASE_URL``,
        ``INFLUXDB_URL``, ``REDIS_URL``; ``MARKETKEEPER_CACHE_TTL``, ``MARKETKEEPER_CACHE_MAX_ENTRY_BYTES``)."""
        from marketkeeper.settings import get_settings

        settings = settings or get_settings()
        options.setdefault("cache_ttl", settings.marketkeeper_cache_ttl)
        options.setdefault("cache_max_entry_bytes", settings.marketkeeper_cache_max_entry_bytes)
        return cls(StoreConfig.from_settings(settings), **options)  # type: ignore[arg-type]

    @classmethod
    def from_airflow(cls, **options: object) -> HistoricalDataProvider:
        """The provider over the stores of the Airflow Connections (inside a task)."""
        from marketkeeper.airflow.stores import store_config

        return cls(store_config(), **options)  # type: ignore[arg-type]

    @property
    def stores(self) -> StoreSet:
        return self._stores

    # --- markets --------------------------------------------------------------------------------------

    def markets(self) -> list[Market]:
        """The declared markets with their stored and servable timeframes."""
        return self._router.markets

    def route(self, exchange: str, symbol: str, timeframe: str) -> Route:
        """Which stored series answers ``timeframe`` (typed errors name what exists): a declared derived tier
        that downsampling has not written yet (no candle at all) is resampled from the base meanwhile."""
        route = self._router.route(exchange, symbol, timeframe)
        if route.derived and route.source not in self._written_tiers:
            if self._stores.candles.last_open_time(route.source) is None:
                return self._router.resampled(self._router.market(exchange, symbol), route.key.timeframe)
            # Looked up once: should retention ever empty a tier, its base is gone too (a finer timeframe is
            # never kept longer), so resampling would find nothing either.
            self._written_tiers.add(route.source)
        return route

    def metadata(self, exchange: str, symbol: str | None = None) -> MarketMetadata:
        """The market's declaration and its finest series' first/last candle and 30-day figures.

        :param exchange: the exchange, or the whole market as ``exchange:symbol`` (then no ``symbol``).
        :raises UnknownMarketError: naming the declared markets.
        """
        if symbol is None:
            exchange, _, symbol = exchange.partition(":")
        market = self._router.market(exchange, symbol)
        key = market.finest
        store = self._stores.candles
        first, last = store.first_open_time(key), store.last_open_time(key)
        if first is None or last is None:
            return MarketMetadata(market, None, None, None, None, None, None, None)
        end = key.timeframe.next_open(last)
        start = max(first, end - METADATA_WINDOW)
        frame = self.get_candles(exchange, symbol, str(key.timeframe), start, end)
        closes = frame[CLOSE].to_numpy()
        return MarketMetadata(
            market,
            first,
            last,
            start,
            end,
            float(closes.min()) if len(closes) else None,
            float(closes.max()) if len(closes) else None,
            float(frame[VOLUME].sum()) if len(closes) else None,
        )

    # --- candles --------------------------------------------------------------------------------------

    def get_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        complete_only: bool = False,
    ) -> pd.DataFrame:
        """The closed candles of ``timeframe`` opening in ``[start, end)`` (aware datetimes), ascending: open
        times in UTC, floats exactly as stored. A derived or resampled timeframe carries ``source_count`` and
        ``expected_count``; ``complete_only`` keeps only the buckets with every base candle. Missing candles
        are missing: nothing is filled in (see :meth:`coverage`).

        :raises UnknownMarketError: the market is not declared.
        :raises UnknownTimeframeError: the timeframe is neither stored nor derivable.
        :raises NaiveDatetimeError, InvalidRangeError: a bad range.
        :raises CandleStoreError: the store failed.
        """
        started = time.perf_counter()
        try:
            route = self.route(exchange, symbol, timeframe)
            start, end = check_range(start, end)
            frame = self._fetch(route, start, end, complete_only)
        except Exception:
            self.metrics.record(time.perf_counter() - started, 0, failed=True)
            raise
        self.metrics.record(time.perf_counter() - started, len(frame))
        return frame

    def _fetch(self, route: Route, start: datetime, end: datetime, want_complete: bool) -> pd.DataFrame:
        now = ensure_utc(self._clock(), "now")
        tf = route.key.timeframe
        parts: list[object] = [tf, to_ns(start), to_ns(end), int(want_complete)]
        if route.resampled:
            # Buckets close as time passes without any write: the newest closed bucket is part of the key.
            parts.append(to_ns(min(tf.floor(now), tf.ceil(end))))

        def load() -> pd.DataFrame:
            frame = reads.read_route(self._stores.candles, route, start, end, now=now)
            return reads.complete_only(frame) if want_complete else frame

        if self._cache is None:
            return load()
        frame, _hit = self._cache.read_through(route.source, parts, load)
        return frame

    def iter_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        complete_only: bool = False,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Generator[pd.DataFrame, None, None]:
        """:meth:`get_candles` as consecutive frames of about ``chunk_rows`` candles each, in constant memory
        (uncached: for ranges too long to hold). Arguments are checked when this is called.

        A resampled timeframe holds back the base candles of the last bucket of each frame until the next
        one, so every bucket is built whole (a bucket's base candles are the extra memory: 44,640 for 1M of 1m).
        """
        route = self.route(exchange, symbol, timeframe)
        start, end = check_range(start, end)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        return self._stream(route, start, end, complete_only, chunk_rows)

    def _stream(
        self, route: Route, start: datetime, end: datetime, want_complete: bool, chunk_rows: int
    ) -> Generator[pd.DataFrame, None, None]:
        started = time.perf_counter()
        rows = 0
        failed = True
        try:
            now = ensure_utc(self._clock(), "now")
            for frame in reads.route_frames(self._stores.candles, route, start, end, chunk_rows=chunk_rows, now=now):
                if want_complete:
                    frame = reads.complete_only(frame)
                if len(frame):
                    rows += len(frame)
                    yield frame
            failed = False
        finally:
            self.metrics.record(time.perf_counter() - started, rows, failed=failed)

    # --- coverage -------------------------------------------------------------------------------------

    def coverage(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> cov.Coverage:
        """What the series of ``timeframe`` holds over ``[start, end)``: stored ranges and open gaps of the series
        it is read from, incomplete buckets of a derived or resampled timeframe, the retention horizon.

        ``start`` defaults to the first stored candle, ``end`` to the newest closed open time.
        """
        route = self.route(exchange, symbol, timeframe)
        now = ensure_utc(self._clock(), "now")
        market = self._router.market(exchange, symbol)
        return cov.series_coverage(self._stores.candles, self._stores.ledger, route, market, start, end, now=now)

    # --- signals --------------------------------------------------------------------------------------

    def store_signal(
        self,
        exchange: str,
        symbol: str,
        strategy_or_bot: str,
        kind: str,
        value: float,
        confidence: float,
        time: datetime,
    ) -> Signal:
        """Store one trading signal (idempotent on exchange, symbol, source and time; see
        :mod:`marketkeeper.marketdata.signals`) and return it as stored."""
        signal = Signal.of(exchange, symbol, strategy_or_bot, kind, value, confidence, time)
        self._signals.write(signal)
        return signal

    def get_signals(
        self,
        exchange: str,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        source: str | None = None,
        kind: str | None = None,
        limit: int = 10_000,
    ) -> list[Signal]:
        """The signals of a market with times in ``[start, end)``, oldest first, at most ``limit``."""
        start, end = check_range(start, end)
        return self._signals.read(exchange, symbol, start, end, source=source, kind=kind, limit=limit)

    # --- figures --------------------------------------------------------------------------------------

    def diagnostics(self) -> Diagnostics:
        """Store reachability (a round trip to each), query count, latency p50/p95/p99, cache hit ratio, rows."""
        from marketkeeper.health import check_stores

        return Diagnostics(
            stores=tuple(check_stores(self.config)),
            stats=self.metrics.snapshot(),
            cache_enabled=self._cache is not None,
            cache_ttl_s=self._cache_ttl,
            cache_max_entry_bytes=self._cache_max,
        )

    def close(self) -> None:
        self._stores.close()
