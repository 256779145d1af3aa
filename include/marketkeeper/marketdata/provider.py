"""The historical-data provider trading bots read candles through: routing to the best stored tier, the
never-stale Redis cache, streaming, coverage, market metadata, signals and query figures.

Every read goes through the candle store's own read API (:meth:`~marketkeeper.stores.base.CandleStore.read`,
``iter_frames``, ``open_times``): there is no second SQL or InfluxQL path. One provider is safe to share
between threads (the stores' engine, session and Redis pools are).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, cast

import numpy as np
import pandas as pd

from marketkeeper.candles import CLOSE, EXPECTED_COUNT, SOURCE_COUNT, VOLUME, SeriesKey, open_time_ns
from marketkeeper.closing import Closing
from marketkeeper.marketdata import coverage as cov
from marketkeeper.marketdata.cache import DEFAULT_LOCAL_BYTES, CandleQueryCache
from marketkeeper.marketdata.metrics import QueryMetrics, QueryStats
from marketkeeper.marketdata.routing import Market, Route, Router
from marketkeeper.marketdata.signals import Signal, SignalStore, signal_store
from marketkeeper.markets import MarketSpec
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.stores.base import CHUNK_ROWS
from marketkeeper.tiers import resample_candles
from marketkeeper.timeframes import check_range, ensure_utc, to_ns

if TYPE_CHECKING:
    from marketkeeper.health import StoreHealth
    from marketkeeper.settings import Settings

__all__ = [
    "DEFAULT_CACHE_MAX_ENTRY_BYTES",
    "DEFAULT_CACHE_TTL",
    "Diagnostics",
    "HistoricalDataProvider",
    "MarketMetadata",
]

log = logging.getLogger(__name__)

#: Seconds a cached query lives (versions make entries unreachable after a write; the TTL frees the memory).
DEFAULT_CACHE_TTL: Final = 3600.0
#: Larger answers are served but not cached: a year of 1m candles encodes to about 38 MB.
DEFAULT_CACHE_MAX_ENTRY_BYTES: Final = 64 * 1024 * 1024
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


def _complete(frame: pd.DataFrame) -> pd.DataFrame:
    """The candles whose bucket is whole: derived ones with ``source_count == expected_count``; a fetched
    candle (no counts) is complete by definition."""
    if SOURCE_COUNT not in frame.columns or EXPECTED_COUNT not in frame.columns or frame.empty:
        return frame
    source = frame[SOURCE_COUNT].to_numpy(dtype=np.int64, na_value=-1)
    expected = frame[EXPECTED_COUNT].to_numpy(dtype=np.int64, na_value=-1)
    keep = (source < 0) | (expected < 0) | (source >= expected)
    return frame if bool(keep.all()) else frame.loc[keep].reset_index(drop=True)


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

    def _fetch(self, route: Route, start: datetime, end: datetime, complete_only: bool) -> pd.DataFrame:
        now = ensure_utc(self._clock(), "now")
        tf = route.key.timeframe
        parts: list[object] = [tf, to_ns(start), to_ns(end), int(complete_only)]
        if route.resampled:
            # Buckets close as time passes without any write: the newest closed bucket is part of the key.
            parts.append(to_ns(min(tf.floor(now), tf.ceil(end))))

        def load() -> pd.DataFrame:
            if route.resampled:
                base = self._stores.candles.read(route.source, tf.ceil(start), tf.ceil(end))
                frame = resample_candles(base, str(route.source.timeframe), str(tf), closed_before=now)
            else:
                frame = self._stores.candles.read(route.source, start, end)
            return _complete(frame) if complete_only else frame

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
        self, route: Route, start: datetime, end: datetime, complete_only: bool, chunk_rows: int
    ) -> Generator[pd.DataFrame, None, None]:
        started = time.perf_counter()
        rows = 0
        failed = True
        try:
            for frame in self._frames(route, start, end, chunk_rows):
                if complete_only:
                    frame = _complete(frame)
                if len(frame):
                    rows += len(frame)
                    yield frame
            failed = False
        finally:
            self.metrics.record(time.perf_counter() - started, rows, failed=failed)

    def _frames(self, route: Route, start: datetime, end: datetime, chunk_rows: int) -> Iterator[pd.DataFrame]:
        store = self._stores.candles
        if not route.resampled:
            yield from store.iter_frames(route.source, start, end, chunk_rows=chunk_rows)
            return
        tf, base = route.key.timeframe, str(route.source.timeframe)
        now = ensure_utc(self._clock(), "now")
        carry: pd.DataFrame | None = None
        frames = cast(
            Generator[pd.DataFrame, None, None],
            store.iter_frames(route.source, tf.ceil(start), tf.ceil(end), chunk_rows=chunk_rows),
        )
        with contextlib.closing(frames):
            for frame in frames:
                if carry is not None:
                    frame = pd.concat([carry, frame], ignore_index=True)
                buckets = tf.floor_ns(open_time_ns(frame))
                cut = int(np.searchsorted(buckets, buckets[-1], side="left"))
                carry = frame.iloc[cut:].reset_index(drop=True)
                if cut:
                    yield resample_candles(frame.iloc[:cut], base, str(tf), closed_before=now)
        if carry is not None and len(carry):
            yield resample_candles(carry, base, str(tf), closed_before=now)

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
        store = self._stores.candles
        now = ensure_utc(self._clock(), "now")
        tf, source_tf = route.key.timeframe, route.source.timeframe
        if start is None:
            start = store.first_open_time(route.source) or tf.floor(now)
        if end is None:
            end = tf.floor(now)
        start, end = check_range(start, end)
        start, end = tf.ceil(start), max(tf.ceil(start), tf.ceil(end))
        closed_end = min(end, source_tf.floor(now))
        times = store.open_times(route.source, start, end)
        incomplete: tuple[cov.IncompleteBucket, ...] = ()
        if route.resampled:
            incomplete = cov.incomplete_buckets(times, source_tf, tf, closed_before=now)
        elif route.derived:
            incomplete = cov.from_counts(store.read(route.source, start, end))
        from marketkeeper.repositories import unit_of_work

        with unit_of_work(self._stores.ledger) as repos:
            horizon = repos.tiers.horizon(route.source)
        market = self._router.market(exchange, symbol)
        days = [
            spec.retention_days[str(source_tf)]
            for spec in market.specs
            if str(source_tf) in getattr(spec, "retention_days", {})
        ]
        return cov.Coverage(
            key=route.key,
            source=route.source,
            route=route.kind,
            start=start,
            end=end,
            stored=cov.stored_ranges(times, source_tf),
            gaps=cov.gaps_of(times, source_tf, start, max(start, closed_end)),
            incomplete=incomplete,
            retention_horizon=horizon,
            retention_days=min(days) if days else None,
        )

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
