"""What the ``ohlcv_gaps`` tasks do, kept out of the DAG file: detect a market's holes, backfill them, re-check.

Stores come from Airflow Connections (:mod:`marketkeeper.airflow.stores`); the work is the same
:mod:`marketkeeper.backfill` functions ``marketkeeper backfill`` and ``marketkeeper gaps detect`` run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from marketkeeper.airflow.ingestion import market_label, plan_markets, series_asset_uri
from marketkeeper.backfill import BackfillError, BackfillReport, backfill_series, detect_series
from marketkeeper.errors import MarketkeeperError
from marketkeeper.markets import MarketSpec

__all__ = ["GapsFailedError", "backfill_market", "detect_market", "plan_markets", "raise_on_failures", "window_start"]


class GapsFailedError(MarketkeeperError):
    """Some markets' gaps failed to backfill; each gap is recorded ``failed`` in the registry with its error."""


def window_start(spec: MarketSpec, now: datetime, window_days: int | None) -> datetime | None:
    """Where detection starts: ``window_days`` before ``now`` (never before the market's first date), else
    the first date (``None``: the series' first stored candle).
    """
    if window_days is None:
        return spec.first_time
    recent = now - timedelta(days=window_days)
    return max(recent, spec.first_time) if spec.first_time is not None else recent


def detect_market(market: Mapping[str, Any], *, window_days: int | None, now: datetime | None = None) -> dict[str, Any]:
    """Detect and record one market's holes; returns the market and the detection window for the next task."""
    from marketkeeper.airflow.stores import open_store_set

    spec = MarketSpec.model_validate(market)
    clock = now or datetime.now(UTC)
    with open_store_set() as stores:
        found = detect_series(
            spec.key,
            store=stores.candles,
            ledger=stores.ledger,
            start=window_start(spec, clock, window_days),
            now=clock,
        )
    return {"market": dict(market), "detection": found.as_dict()}


def backfill_market(
    detected: Mapping[str, Any],
    *,
    retry_source_empty: bool,
    max_failed_fraction: float,
    airflow: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], BackfillReport]:
    """Backfill the due gaps of one market over its detection window (which re-detects at the end).

    Gap failures do not raise here: they are recorded, returned (``failed``/``errors``) and turned into a
    failed run by :func:`raise_on_failures`, so that the candles written before still get their Asset events.
    """
    from marketkeeper.airflow.stores import open_store_set
    from marketkeeper.sources import make_source

    spec = MarketSpec.model_validate(detected["market"])
    detection = detected["detection"]
    start = datetime.fromisoformat(detection["window_start"])
    end = datetime.fromisoformat(detection["window_end"])
    source = make_source(spec.source, exchange=spec.exchange)
    with open_store_set() as stores:
        try:
            report = backfill_series(
                spec.key,
                start,
                end,
                source=source,
                store=stores.candles,
                ledger=stores.ledger,
                cache=stores.cache,
                retry_source_empty=retry_source_empty,
                max_failed_fraction=max_failed_fraction,
                airflow=airflow,
                now=now,
            )
        except BackfillError as exc:
            report = exc.report
    summary = {**report.as_dict(), "errors": report.errors[:10], "label": market_label(spec)}
    return summary, report


def asset_events(spec: MarketSpec, report: BackfillReport) -> list[tuple[str, str, dict[str, object]]]:
    """``(name, uri, extra)`` of each Asset event to emit: one per range written, shaped like ingestion's."""
    label = market_label(spec)
    events = []
    for written in report.written_ranges:
        extra: dict[str, object] = {
            "market": f"{spec.exchange}:{spec.symbol}",
            "timeframe": str(spec.base_timeframe),
            "start": written.start.isoformat(),
            "end": written.end.isoformat(),
            "rows": written.rows,
            "written": written.rows,
            "origin": "backfill",
        }
        events.append((f"candles:{label}", series_asset_uri(spec), extra))
    return events


def raise_on_failures(reports: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The run's totals; raises :class:`GapsFailedError` naming each market with failed gaps."""
    totals = {"markets": 0, "gaps_attempted": 0, "filled": 0, "written": 0, "failed": 0, "missing_after": 0}
    failures = []
    for report in reports:
        totals["markets"] += 1
        for name in ("gaps_attempted", "filled", "written", "failed", "missing_after"):
            totals[name] += int(report[name])
        if int(report["failed"]):
            failures.append(f"{report['label']}: {report['failed']} gap(s) failed, first: {report['errors'][0]}")
    if failures:
        raise GapsFailedError("; ".join(failures))
    return totals
