"""Use case: ingest one series, over a range of open times or over a scheduled run's data interval.

``marketkeeper ingest`` and the ``ohlcv_ingest`` tasks both call :func:`ingest_series`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from marketkeeper.ingest import IngestReport, Pipeline
from marketkeeper.markets import MarketSpec
from marketkeeper.services.policy import DEFAULT_MAX_FAILED_FRACTION, LockPolicy
from marketkeeper.services.writer import series_writer
from marketkeeper.sources.base import CandleSource
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.timeframes import Timeframe, check_range

if TYPE_CHECKING:
    from marketkeeper.quality import GateResult

__all__ = ["IngestRequest", "closed_in_interval", "ingest_series", "series_range"]


def closed_in_interval(timeframe: Timeframe, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The open times ``[lo, hi)`` of the candles that *close* in the data interval ``(start, end]``.

    A run over ``[start, end)`` happens at ``end``: the candles it can fetch are those closed by then, and a
    candle longer than the interval (a 4h candle seen by hourly runs) closes in exactly one interval. So
    consecutive intervals, and an ``airflow backfill`` over any range, cover every candle exactly once, for
    every timeframe (1w and 1M through the calendar-aware :class:`Timeframe`). The result is
    ``[floor(start), floor(end))`` and may be empty (an hourly run in which no 4h candle closes).
    """
    start, end = check_range(start, end)
    return timeframe.floor(start), timeframe.floor(end)


@dataclass(frozen=True)
class IngestRequest:
    """What to ingest: ``market``'s base series over open times ``[start, end)``.

    :param market: the declared (or ad-hoc) market; its ``first_date`` clips ``start`` and its source is used.
    :param max_failed_fraction: a window whose failing share exceeds this fails (after recording evidence).
    """

    market: MarketSpec
    start: datetime
    end: datetime
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION


def series_range(request: IngestRequest) -> tuple[datetime, datetime]:
    """The open times ``[start, end)`` :func:`ingest_series` ingests for ``request``: its range, clipped to
    start no earlier than the market's ``first_date``."""
    start, end = check_range(request.start, request.end)
    first = request.market.first_time
    return (start if first is None else min(max(start, first), end)), end


def ingest_series(
    config: StoreConfig,
    request: IngestRequest,
    *,
    airflow: Mapping[str, str] | None = None,
    progress: Callable[[IngestReport], None] | None = None,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
    source: CandleSource | None = None,
    stores: StoreSet | None = None,
    prechecked: Mapping[tuple[datetime, datetime], GateResult] | None = None,
) -> IngestReport:
    """Fetch, check, store and announce the request's candles under the series lock.

    :param config: where the stores are.
    :param airflow: dag_id/run_id/task_id recorded with each quality run.
    :param progress: called after each window with the running report.
    :param now: the clock for "closed" (default: the current time).
    :param source: a source built by the caller instead of the market's declared one.
    :param policy: the lock policy (default: :data:`~marketkeeper.services.policy.LOCK_POLICY`).
    :param stores: stores a batch already opened, used instead of opening ``config``'s (and left open).
    :param prechecked: windows of :func:`series_range` a batch already fetched from ``source`` and checked
        (see :func:`~marketkeeper.ingest.ingest_range`).
    :raises SeriesLockedError: another writer kept the series past the policy's wait.
    :raises QualityGateError | SourceError | CandleStoreError: as :func:`~marketkeeper.ingest.ingest_range`.
    """
    from marketkeeper.sources import make_source

    spec = request.market
    start, end = series_range(request)
    source = source or make_source(spec.source, exchange=spec.exchange)
    with series_writer(config, spec.key, policy, stores=stores) as (opened, lock):
        pipeline = Pipeline.over(
            opened,
            source,
            max_failed_fraction=request.max_failed_fraction,
            now=now,
            airflow=airflow,
            lock=lock,
            prechecked=prechecked,
        )
        return pipeline.ingest(spec.key, start, end, progress=progress)
