"""The ops status in Prometheus' text exposition format (``prometheus-client``), labelled by series or store.

A collector over one :class:`~marketkeeper.ops.figures.OpsStatus` rendered into its own registry, so a scrape
shows exactly the figures of that evaluation (no process-global state between scrapes).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketkeeper.ops.figures import OpsStatus

__all__ = ["CONTENT_TYPE", "render_metrics"]

#: The exposition format's media type, as Prometheus expects it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SERIES = ["exchange", "symbol", "timeframe"]


class _StatusCollector(Collector):
    def __init__(self, status: OpsStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status, now = self.status, self.status.generated_at

        def series_gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"marketkeeper_series_{name}", doc, labels=_SERIES)

        lag = series_gauge("freshness_lag_candles", "Closed candles not stored yet after the newest stored one.")
        age = series_gauge("last_candle_age_seconds", "Seconds since the newest stored candle opened.")
        gaps = series_gauge("open_gaps", "Gaps of the registry still to fill (open, partially filled, failed).")
        missing = series_gauge("missing_candles", "Candles missing in the open gaps.")
        quarantined = series_gauge("quarantined_rows_24h", "Rows quarantined by the quality gate over 24 h.")
        share = series_gauge("quality_failure_share_24h", "Share of checked rows failing the quality gate, 24 h.")
        for s in status.series:
            labels = [s.exchange, s.symbol, s.timeframe]
            if s.lag_candles is not None:
                lag.add_metric(labels, s.lag_candles)
            if s.last_candle is not None:
                age.add_metric(labels, (now - s.last_candle).total_seconds())
            gaps.add_metric(labels, s.open_gaps)
            missing.add_metric(labels, s.missing_candles)
            quarantined.add_metric(labels, s.quarantined_24h)
            if s.quality_failure_share is not None:
                share.add_metric(labels, s.quality_failure_share)
        yield from (lag, age, gaps, missing, quarantined, share)

        up = GaugeMetricFamily(
            "marketkeeper_store_up", "1 when the store answered, 0 when it did not.", labels=["store"]
        )
        latency = GaugeMetricFamily(
            "marketkeeper_store_latency_seconds", "Round-trip time of the store's ping.", labels=["store"]
        )
        for st in status.stores:
            if not st.configured:
                continue
            up.add_metric([st.store], 1 if st.ok else 0)
            if st.latency_ms is not None:
                latency.add_metric([st.store], st.latency_ms / 1000)
        yield from (up, latency)

        backup_age = GaugeMetricFamily(
            "marketkeeper_backup_age_seconds",
            "Age of the newest backup of a store, succeeded or verified by a restore drill.",
            labels=["store", "kind"],
        )
        for b in status.backups or []:
            for kind, verified in (("succeeded", False), ("verified", True)):
                seconds = b.age_seconds(now, verified=verified)
                if seconds is not None:
                    backup_age.add_metric([b.store, kind], seconds)
        yield backup_age

        breaches = GaugeMetricFamily(
            "marketkeeper_slo_breach", "1 for each SLO breached, by SLO and subject.", labels=["slo", "subject"]
        )
        for breach in status.breaches:
            breaches.add_metric([breach.slo, breach.subject], 1)
        yield breaches

        alerts = GaugeMetricFamily(
            "marketkeeper_open_alerts", "Open operator alerts, by kind (slo_breach, task_failed).", labels=["kind"]
        )
        for kind in ("slo_breach", "task_failed"):
            alerts.add_metric([kind], sum(a.kind == kind for a in status.alerts))
        yield alerts


def render_metrics(status: OpsStatus) -> bytes:
    """``status`` in the text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry)
