"""Query figures of one provider: counts, latency percentiles, cache hit ratio and rows served, thread-safe."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np

__all__ = ["QueryMetrics", "QueryStats"]

#: Latencies kept for the percentiles: the most recent ones (a bounded window, so memory stays constant).
LATENCY_WINDOW: Final = 10_000


@dataclass(frozen=True)
class QueryStats:
    """A snapshot of :class:`QueryMetrics`; latencies in milliseconds over the last :data:`LATENCY_WINDOW` queries."""

    queries: int
    errors: int
    rows_served: int
    cache_hits: int
    #: of the hits, those answered from the provider's memory after the version check
    cache_local_hits: int
    cache_misses: int
    cache_errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits over cache lookups; ``None`` before the first lookup (or without Redis)."""
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else None

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "errors": self.errors,
            "rows_served": self.rows_served,
            "cache_hits": self.cache_hits,
            "cache_local_hits": self.cache_local_hits,
            "cache_misses": self.cache_misses,
            "cache_errors": self.cache_errors,
            "cache_hit_ratio": self.cache_hit_ratio,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
        }


class QueryMetrics:
    """Counters a provider updates after each query; :meth:`snapshot` reads them consistently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._queries = self._errors = self._rows = 0
        self._hits = self._local_hits = self._misses = self._cache_errors = 0

    def record(self, seconds: float, rows: int, *, failed: bool = False) -> None:
        with self._lock:
            self._queries += 1
            self._latencies.append(seconds * 1000)
            if failed:
                self._errors += 1
            else:
                self._rows += rows

    def cache_lookup(self, *, hit: bool, local: bool = False) -> None:
        with self._lock:
            if hit:
                self._hits += 1
                self._local_hits += local
            else:
                self._misses += 1

    def cache_error(self) -> None:
        with self._lock:
            self._cache_errors += 1

    def snapshot(self) -> QueryStats:
        with self._lock:
            latencies = np.fromiter(self._latencies, dtype=np.float64)
            counts = (
                self._queries,
                self._errors,
                self._rows,
                self._hits,
                self._local_hits,
                self._misses,
                self._cache_errors,
            )
        p50 = p95 = p99 = None
        if len(latencies):
            p50, p95, p99 = (float(v) for v in np.percentile(latencies, [50, 95, 99]))
        return QueryStats(*counts, latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p99)
