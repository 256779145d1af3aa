"""The provider's query figures in Prometheus' text exposition format, for ``GET /metrics`` of ``marketkeeper
serve`` (the figures live in that process; the ops endpoint of the Airflow api-server cannot see them).

Rendered from one :class:`~marketkeeper.marketdata.metrics.QueryStats` snapshot into a registry of its own, as
:mod:`marketkeeper.ops.metrics` does, so a scrape shows exactly that snapshot. Store reachability is left to the
ops endpoint's ``marketkeeper_store_up``: a scrape here never pings a store.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketkeeper.marketdata.metrics import QueryStats
from marketkeeper.ops.metrics import CONTENT_TYPE

__all__ = ["CONTENT_TYPE", "render_metrics"]

_PREFIX = "marketkeeper_marketdata_"


class _StatsCollector(Collector):
    def __init__(self, stats: QueryStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        counters = {
            "queries": (s.queries, "Candle queries answered or failed."),
            "query_errors": (s.errors, "Candle queries that failed."),
            "rows_served": (s.rows_served, "Candles returned."),
            "cache_hits": (s.cache_hits, "Queries answered by the cache."),
            "cache_local_hits": (s.cache_local_hits, "Cache hits answered from the provider's memory."),
            "cache_misses": (s.cache_misses, "Cache lookups that read the store."),
            "cache_errors": (s.cache_errors, "Redis failures (the query was read uncached)."),
        }
        for name, (value, doc) in counters.items():
            yield CounterMetricFamily(_PREFIX + name, doc, value=value)
        latency = GaugeMetricFamily(
            _PREFIX + "latency_seconds", "Query latency over the last 10,000 queries.", labels=["quantile"]
        )
        for quantile, ms in (("0.5", s.latency_p50_ms), ("0.95", s.latency_p95_ms), ("0.99", s.latency_p99_ms)):
            if ms is not None:
                latency.add_metric([quantile], ms / 1000)
        yield latency
        if s.cache_hit_ratio is not None:
            yield GaugeMetricFamily(_PREFIX + "cache_hit_ratio", "Hits over cache lookups.", value=s.cache_hit_ratio)


def render_metrics(stats: QueryStats) -> bytes:
    """The exposition text of ``stats``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatsCollector(stats))
    return generate_latest(registry)
