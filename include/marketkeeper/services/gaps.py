"""Use cases: detect a series' gaps, and backfill a series (its due gaps, or the whole range).

``marketkeeper gaps detect``, ``marketkeeper backfill`` and the ``ohlcv_gaps`` tasks call these. A backfill
scans the series twice: once to detect, once after filling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from marketkeeper.gaps.backfill import BackfillError, BackfillReport, Detection, backfill_series, detect_series
from marketkeeper.ingest import Pipeline
from marketkeeper.markets import MarketSpec
from marketkeeper.services.policy import DEFAULT_MAX_FAILED_FRACTION, LockPolicy
from marketkeeper.services.writer import series_writer
from marketkeeper.sources.base import CandleSource
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.timeframes import ensure_utc

__all__ = ["BackfillError", "BackfillReport", "BackfillRequest", "Detection", "backfill_market", "detect_gaps"]


def detect_gaps(
    config: StoreConfig,
    market: MarketSpec,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
    record: bool = True,
) -> Detection:
    """Detect ``market``'s missing candles and (unless ``record`` is false) record them in the registry.

    The window starts at ``start``, else the market's ``first_date``, else its first stored candle, else the
    default horizon; it ends at ``end`` or at the last closed candle.
    """
    with StoreSet.open(config) as stores:
        return detect_series(
            market.key, store=stores.candles, ledger=stores.ledger, start=start, end=end, now=now, record=record
        )


@dataclass(frozen=True)
class BackfillRequest:
    """What to backfill: ``market``'s series over ``[start, end)`` (``None``: the detection window).

    :param force: re-fetch the whole range, not only the due gaps.
    :param retry_source_empty: also retry gaps the source had nothing for.
    """

    market: MarketSpec
    start: datetime | None = None
    end: datetime | None = None
    force: bool = False
    retry_source_empty: bool = False
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION


def backfill_market(
    config: StoreConfig,
    request: BackfillRequest,
    *,
    airflow: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
    source: CandleSource | None = None,
    stores: StoreSet | None = None,
) -> BackfillReport:
    """Under the series lock: detect, fill what is due (or everything with ``force``), detect again.

    :param source: a source built by the caller instead of the market's declared one.
    :param policy: the lock policy (default: :data:`~marketkeeper.services.policy.LOCK_POLICY`).
    :param stores: stores a batch already opened, used instead of opening ``config``'s (and left open).
    :raises SeriesLockedError: another writer kept the series past the policy's wait.
    :raises BackfillError: some gaps failed; each is recorded ``failed`` (``exc.report`` has the rest).
    :raises CandleStoreError | SeriesLockLostError: a store or the lock failed; the backfill stopped.
    """
    from marketkeeper.sources import make_source

    spec = request.market
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    source = source or make_source(spec.source, exchange=spec.exchange)
    # A declared first_date bounds a backfill as it bounds ingestion: nothing before it is kept.
    start = request.start
    if start is not None and spec.first_time is not None:
        start = max(start, spec.first_time)
    with series_writer(config, spec.key, policy, stores=stores) as (opened, lock):
        detected = detect_series(
            spec.key, store=opened.candles, ledger=opened.ledger, start=start, end=request.end, now=clock
        )
        start, end = detected.window
        if start >= end:
            return BackfillReport(key=spec.key, start=start, end=end, force=request.force, origin=detected.origin)
        pipeline = Pipeline.over(
            opened, source, max_failed_fraction=request.max_failed_fraction, now=clock, airflow=airflow, lock=lock
        )
        return backfill_series(
            spec.key,
            start,
            end,
            pipeline,
            force=request.force,
            retry_source_empty=request.retry_source_empty,
            detected=detected,
            progress=progress,
        )
