"""Detection and backfill of one series: find its holes, re-fetch only those through ingestion, record the outcome.

The DAG ``ohlcv_gaps`` and ``marketkeeper backfill``/``marketkeeper gaps detect`` call these. Candles go through
:func:`~marketkeeper.ingest.ingest_range` (same source, quality gate, store and Redis updates as ingestion),
under the series lock, so a backfill never writes a series another backfill is writing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError, StoreUnavailableError
from marketkeeper.gap_registry import (
    DetectionReport,
    RetryPolicy,
    due_gaps,
    record_detection,
    record_empty,
    record_failure,
    record_remaining,
)
from marketkeeper.gaps import Gap, detection_window, find_gaps
from marketkeeper.ingest import DEFAULT_WINDOW, IngestReport, ingest_range
from marketkeeper.ledger import CandleGap, GapStatus, Market, session_scope
from marketkeeper.locks import DEFAULT_TTL, series_lock
from marketkeeper.quality import QualityGateError
from marketkeeper.sources.base import CandleSource, SourceError
from marketkeeper.stores.base import CandleStore, CandleStoreError, CandleStoreUnavailableError
from marketkeeper.timeframes import check_range, ensure_utc

__all__ = [
    "BackfillError",
    "BackfillReport",
    "Detection",
    "WrittenRange",
    "backfill_series",
    "detect_series",
    "get_or_create_market",
]

log = logging.getLogger(__name__)

#: Failures of one gap that leave the others worth trying: recorded as ``failed`` on that gap.
_GAP_ERRORS: Final = (SourceError, QualityGateError)
#: Failures of a store: nothing else can succeed, so the backfill stops (after recording the gap).
_FATAL_ERRORS: Final = (CandleStoreUnavailableError, StoreUnavailableError, CandleStoreError, sa.exc.OperationalError)


class BackfillError(MarketkeeperError):
    """Some gaps of a backfill failed; each is recorded ``failed`` with its error. ``report`` says what succeeded."""

    def __init__(self, report: BackfillReport) -> None:
        failures = "; ".join(report.errors[:3]) + (" ..." if len(report.errors) > 3 else "")
        super().__init__(
            f"backfill of {report.key} [{report.start.isoformat()}, {report.end.isoformat()}): "
            f"{report.failed} gap(s) failed: {failures}"
        )
        self.report = report


@dataclass(frozen=True)
class WrittenRange:
    """A range a backfill wrote candles into (what an Asset event announces)."""

    start: datetime
    end: datetime
    rows: int


@dataclass
class Detection:
    """One detection: the window checked, the holes found and how the registry changed."""

    key: SeriesKey
    window: tuple[datetime, datetime]
    gaps: list[Gap]
    registry: DetectionReport

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    def as_dict(self) -> dict[str, object]:
        return {
            "series": str(self.key),
            "window_start": self.window[0].isoformat(),
            "window_end": self.window[1].isoformat(),
            "gaps": len(self.gaps),
            "missing": self.missing,
            **self.registry.as_dict(),
        }


@dataclass
class BackfillReport:
    """What one backfill did; gap counts are by the outcome of each gap attempted."""

    key: SeriesKey
    start: datetime
    end: datetime
    force: bool = False
    expected: int = 0
    gaps_attempted: int = 0
    filled: int = 0
    partially_filled: int = 0
    source_empty: int = 0
    still_open: int = 0
    failed: int = 0
    fetched: int = 0
    written: int = 0
    quarantined: int = 0
    skipped: int = 0
    missing_after: int = 0
    written_ranges: list[WrittenRange] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def absorb(self, ingest: IngestReport) -> None:
        self.fetched += ingest.fetched
        self.written += ingest.written
        self.quarantined += ingest.quarantined
        self.skipped += ingest.skipped
        if ingest.written and ingest.first_written is not None and ingest.last_written is not None:
            tf = self.key.timeframe
            self.written_ranges.append(
                WrittenRange(ingest.first_written, tf.next_open(ingest.last_written), ingest.written)
            )

    def as_dict(self) -> dict[str, object]:
        return {
            "market": f"{self.key.exchange}:{self.key.symbol}",
            "timeframe": str(self.key.timeframe),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "force": self.force,
            "gaps_attempted": self.gaps_attempted,
            "filled": self.filled,
            "partially_filled": self.partially_filled,
            "source_empty": self.source_empty,
            "still_open": self.still_open,
            "failed": self.failed,
            "fetched": self.fetched,
            "written": self.written,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "missing_after": self.missing_after,
            "rows": self.written,
        }


def get_or_create_market(session: sa.orm.Session, key: SeriesKey, *, source: str = "ccxt") -> Market:
    """The ``markets`` row of ``key`` (exchange, symbol, base timeframe); an ad-hoc series gets an inactive one.

    Gaps reference a market, so a backfill of a series nobody declared still needs a row; it is inactive so
    that scheduled ingestion does not start keeping it.
    """
    query = sa.select(Market).where(
        Market.exchange == key.exchange, Market.symbol == key.symbol, Market.base_timeframe == str(key.timeframe)
    )
    market = session.scalars(query).one_or_none()
    if market is None:
        market = Market(
            exchange=key.exchange, symbol=key.symbol, base_timeframe=str(key.timeframe), source=source, active=False
        )
        session.add(market)
        session.flush()
    return market


def detect_series(
    key: SeriesKey,
    *,
    store: CandleStore,
    ledger: sa.Engine,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
    record: bool = True,
) -> Detection:
    """Find the holes of ``key`` and (by default) record them in the gap registry.

    The window runs from ``start``, else the market's ``first_date``, else the series' first stored candle, to
    ``end`` or just after the last candle closed at ``now``.

    :param record: ``False`` only reports (``marketkeeper gaps detect --dry-run``).
    """
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    tf = key.timeframe
    with session_scope(ledger) as session:
        market = get_or_create_market(session, key)
        first: datetime | None = start
        if first is None and market.first_date is not None:
            d = market.first_date
            first = datetime(d.year, d.month, d.day, tzinfo=UTC)
        if first is None:
            first = store.first_open_time(key)
        if first is None:
            # Nothing declared and nothing stored: there is no series to have holes in yet.
            window = (tf.floor(clock), tf.floor(clock))
        else:
            window = detection_window(tf, now=clock, first=first)
            if end is not None:
                window = (window[0], max(window[0], min(tf.ceil(ensure_utc(end, "end")), window[1])))
        gaps = find_gaps(store.open_times(key, *window), tf, *window)
        report = DetectionReport()
        if record:
            report = record_detection(session, market, tf, gaps, window, now=clock)
        else:
            session.rollback()
    log.info("%s [%s, %s): %d gap(s), %d missing", key, window[0], window[1], len(gaps), sum(g.missing for g in gaps))
    return Detection(key=key, window=window, gaps=gaps, registry=report)


def backfill_series(
    key: SeriesKey,
    start: datetime,
    end: datetime,
    *,
    source: CandleSource,
    store: CandleStore,
    ledger: sa.Engine,
    cache: CandleCache | None = None,
    force: bool = False,
    retry_source_empty: bool = False,
    policy: RetryPolicy | None = None,
    max_failed_fraction: float = 0.01,
    chunk: int = DEFAULT_WINDOW,
    now: datetime | None = None,
    airflow: Mapping[str, str] | None = None,
    lock_wait: float = 0.0,
    lock_ttl: float = DEFAULT_TTL,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Fill the holes of ``key`` in ``[start, end)``, under the series lock, and record each gap's outcome.

    Without ``force``: detect, then fetch only the gaps that are due (``open``; ``failed`` past their backoff;
    ``source_empty`` if ``retry_source_empty`` or past their long backoff), each clipped to ``[start, end)``, in
    chunks of ``chunk`` candles. Per gap: all candles arrived -> ``filled``; some -> ``partially_filled`` with the
    rest split off as ``open``; none because the source had none -> an empty attempt (``source_empty`` after
    ``policy.source_empty_after``); the source or quality gate raised -> ``failed`` with the error. With
    ``force`` the whole range is re-fetched. Either way the range is detected again at the end.

    :param cache: the Redis candle cache: ingestion's Redis updates, and the lock lives in its Redis.
    :param progress: called with ``(candles fetched, candles expected)`` after each chunk.
    :raises SeriesLockedError: another process is writing the series (after ``lock_wait`` seconds).
    :raises BackfillError: some gaps failed (each recorded as ``failed``); the others were done.
    :raises CandleStoreError: a store failed; the gap being filled is recorded ``failed`` first.
    """
    start, end = check_range(start, end)
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    tf = key.timeframe
    report = BackfillReport(key=key, start=start, end=end, force=force)
    lock = series_lock(
        key, redis_client=cache.client if cache is not None else None, ledger=ledger, ttl=lock_ttl, wait=lock_wait
    )

    def ingest(lo: datetime, hi: datetime, done_before: int) -> IngestReport:
        lock.ensure_held()
        return ingest_range(
            key,
            lo,
            hi,
            source=source,
            store=store,
            ledger=ledger,
            cache=cache,
            max_failed_fraction=max_failed_fraction,
            window=chunk,
            now=clock,
            airflow=airflow,
            progress=(lambda r: progress(done_before + r.fetched, report.expected)) if progress else None,
        )

    with lock:
        detect_series(key, store=store, ledger=ledger, start=start, end=end, now=clock)
        if force:
            report.expected = tf.count(start, end)
            report.absorb(ingest(start, end, 0))
        else:
            with session_scope(ledger) as session:
                market = get_or_create_market(session, key)
                due = due_gaps(
                    session,
                    market=market,
                    timeframe=tf,
                    now=clock,
                    retry_source_empty=retry_source_empty,
                    policy=policy,
                    within=(start, end),
                )
                targets = [(g.id, max(g.start, start), min(g.end, end)) for g in due]
            report.expected = sum(tf.count(lo, hi) for _, lo, hi in targets)
            for gap_id, lo, hi in targets:
                _backfill_gap(
                    key,
                    gap_id,
                    lo,
                    hi,
                    ingest=ingest,
                    report=report,
                    store=store,
                    ledger=ledger,
                    now=clock,
                    policy=policy,
                )
        final = detect_series(key, store=store, ledger=ledger, start=start, end=end, now=clock)
        report.missing_after = final.missing
    if report.failed:
        raise BackfillError(report)
    return report


def _backfill_gap(
    key: SeriesKey,
    gap_id: int,
    lo: datetime,
    hi: datetime,
    *,
    ingest: Callable[[datetime, datetime, int], IngestReport],
    report: BackfillReport,
    store: CandleStore,
    ledger: sa.Engine,
    now: datetime,
    policy: RetryPolicy | None,
) -> None:
    """Attempt one gap (clipped to ``[lo, hi)``) and record its outcome."""
    tf = key.timeframe
    report.gaps_attempted += 1
    try:
        result = ingest(lo, hi, report.fetched)
    except _GAP_ERRORS as exc:
        report.failed += 1
        report.errors.append(f"[{lo.isoformat()}, {hi.isoformat()}): {exc}")
        with session_scope(ledger) as session:
            record_failure(session, session.get_one(CandleGap, gap_id), exc, now=now)
        log.warning("gap %s [%s, %s) failed: %s", key, lo, hi, exc)
        return
    except _FATAL_ERRORS as exc:
        with session_scope(ledger) as session:
            record_failure(session, session.get_one(CandleGap, gap_id), exc, now=now)
        raise
    report.absorb(result)
    with session_scope(ledger) as session:
        gap = session.get_one(CandleGap, gap_id)
        remaining = find_gaps(store.open_times(key, gap.start, gap.end), tf, gap.start, gap.end)
        unchanged = len(remaining) == 1 and (remaining[0].start, remaining[0].end) == (gap.start, gap.end)
        if unchanged and result.fetched == 0:
            record_empty(session, gap, policy=policy, now=now)
            if gap.status == GapStatus.SOURCE_EMPTY:
                report.source_empty += 1
            else:
                report.still_open += 1
        elif unchanged:
            # Candles came but none passed the quality gate: a data problem, retried with backoff.
            report.failed += 1
            message = (
                f"{result.fetched} candle(s) fetched, none passed the quality gate ({result.quarantined} quarantined)"
            )
            report.errors.append(f"[{lo.isoformat()}, {hi.isoformat()}): {message}")
            record_failure(session, gap, message, now=now)
        else:
            outcome = record_remaining(session, gap, remaining, now=now)
            if outcome.filled:
                report.filled += 1
            else:
                report.partially_filled += 1
