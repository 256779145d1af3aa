"""Detection and backfill of one series: find its holes, re-fetch only those through ingestion, record the outcome.

The DAG ``ohlcv_gaps`` and ``marketkeeper backfill``/``marketkeeper gaps detect`` call these. Candles go through
:func:`~marketkeeper.ingest.ingest_range` (same source, quality gate, store and Redis updates as ingestion),
under the series lock, so a backfill never writes a series another backfill is writing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError, StoreUnavailableError, describe
from marketkeeper.gaps.detect import Gap, detection_window, find_gaps
from marketkeeper.gaps.registry import (
    DetectionReport,
    RetryPolicy,
    due_gaps,
    record_detection,
    record_empty,
    record_failure,
    record_remaining,
)
from marketkeeper.ingest import DEFAULT_WINDOW, IngestReport, Pipeline
from marketkeeper.ledger import GapStatus, Market
from marketkeeper.locks import SeriesLockLostError
from marketkeeper.repositories import unit_of_work
from marketkeeper.services.policy import DEFAULT_HISTORY_DAYS
from marketkeeper.stores.base import CandleStore, CandleStoreError, CandleStoreUnavailableError
from marketkeeper.timeframes import check_range, ensure_utc

__all__ = [
    "BackfillError",
    "BackfillReport",
    "Detection",
    "WrittenRange",
    "backfill_series",
    "detect_series",
]

log = logging.getLogger(__name__)

#: Failures of a store or of the lock: nothing else can succeed, so the backfill stops (after recording the
#: gap). Every other error of a gap is recorded on that gap and the backfill goes on.
_FATAL_ERRORS: Final = (
    CandleStoreUnavailableError,
    StoreUnavailableError,
    CandleStoreError,
    sa.exc.OperationalError,
    SeriesLockLostError,
)


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
    #: Where the window started from: ``requested start``, ``first_date``, ``first stored candle``, the
    #: default horizon, or the ``retention horizon`` (retention deleted what lies before it).
    origin: str = "requested start"

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
            "origin": self.origin,
            **self.registry.as_dict(),
        }


@dataclass
class BackfillReport:
    """What one backfill did; gap counts are by the outcome of each gap attempted."""

    key: SeriesKey
    start: datetime
    end: datetime
    force: bool = False
    #: Where the backfilled window started from (see :attr:`Detection.origin`).
    origin: str = "requested start"
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


def detect_series(
    key: SeriesKey,
    *,
    store: CandleStore,
    ledger: sa.Engine,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
    record: bool = True,
    history_days: int = DEFAULT_HISTORY_DAYS,
) -> Detection:
    """Find the holes of ``key`` and (by default) record them in the gap registry.

    The window runs from ``start``, else the market's ``first_date``, else the series' first stored candle,
    else (a market with neither: nothing would ever be checked) ``history_days`` before ``now``; it ends at
    ``end`` or just after the last candle closed at ``now``. :attr:`Detection.origin` says which applied.

    :param record: ``False`` only reports (``marketkeeper gaps detect --dry-run``).
    """
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    tf = key.timeframe
    with unit_of_work(ledger) as repos:
        market = repos.markets.get_or_create(key)
        first, origin = _window_start(key, market, store, start, clock, history_days)
        # Retention deleted what lies before the horizon on purpose: never a gap, never backfilled again.
        horizon = repos.tiers.horizon(key)
        if horizon is not None and first < horizon:
            first, origin = horizon, "retention horizon"
        window = detection_window(tf, now=clock, first=first)
        if end is not None:
            window = (window[0], max(window[0], min(tf.ceil(ensure_utc(end, "end")), window[1])))
        gaps = find_gaps(store.open_times(key, *window), tf, *window)
        report = DetectionReport()
        if record:
            report = record_detection(repos.session, market, tf, gaps, window, now=clock)
        else:
            repos.session.rollback()
    log.info("%s [%s, %s): %d gap(s), %d missing", key, window[0], window[1], len(gaps), sum(g.missing for g in gaps))
    return Detection(key=key, window=window, gaps=gaps, registry=report, origin=origin)


def _window_start(
    key: SeriesKey,
    market: Market,
    store: CandleStore,
    start: datetime | None,
    now: datetime,
    history_days: int,
) -> tuple[datetime, str]:
    if start is not None:
        return ensure_utc(start, "start"), "requested start"
    if market.first_date is not None:
        d = market.first_date
        return datetime(d.year, d.month, d.day, tzinfo=UTC), "first_date"
    stored = store.first_open_time(key)
    if stored is not None:
        return stored, "first stored candle"
    log.warning(
        "%s declares no first_date and has nothing stored: checking the default horizon of the last %d days",
        key,
        history_days,
    )
    return now - timedelta(days=history_days), f"default horizon ({history_days} days: no first_date, nothing stored)"


def backfill_series(
    key: SeriesKey,
    start: datetime,
    end: datetime,
    pipeline: Pipeline,
    *,
    force: bool = False,
    retry_source_empty: bool = False,
    policy: RetryPolicy | None = None,
    chunk: int = DEFAULT_WINDOW,
    detected: Detection | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Fill the holes of ``key`` in ``[start, end)`` and record each gap's outcome; the caller holds the
    series lock (:mod:`marketkeeper.services.gaps` takes it) and passes it to be checked before every write.

    Without ``force``: detect, then fetch only the gaps that are due (``open``; ``failed`` past their backoff;
    ``source_empty`` if ``retry_source_empty`` or past their long backoff), each clipped to ``[start, end)``, in
    chunks of ``chunk`` candles. Per gap: all candles arrived -> ``filled``; some -> ``partially_filled`` with the
    rest split off as ``open``; none because the source had none -> an empty attempt (``source_empty`` after
    ``policy.source_empty_after``); the source or quality gate raised -> ``failed`` with the error. With
    ``force`` the whole range is re-fetched. Either way the range is detected again at the end, so a series is
    scanned twice: once before (unless ``detected`` is the detection the caller just made) and once after.
    Any error of one gap other than a store or lock failure is recorded on that gap (``failed``, retried with
    backoff) and the other gaps still run.

    :param pipeline: source, stores and rules of every gap's ingestion; its ``lock`` (the series lock the caller
        holds) is checked before every write, so a lost lock stops the backfill.
    :param detected: a detection of this series over ``[start, end)`` made just now under the same lock.
    :param progress: called with ``(candles fetched, candles expected)`` after each chunk.
    :raises SeriesLockLostError: the lock was lost; nothing more was written.
    :raises BackfillError: some gaps failed (each recorded as ``failed``); the others were done.
    :raises CandleStoreError: a store failed; the gap being filled is recorded ``failed`` first.
    """
    start, end = check_range(start, end)
    clock = ensure_utc(pipeline.now, "now") if pipeline.now is not None else datetime.now(UTC)
    pipeline = replace(pipeline, now=clock)
    store, ledger = pipeline.store, pipeline.ledger
    tf = key.timeframe
    report = BackfillReport(
        key=key, start=start, end=end, force=force, origin=detected.origin if detected else "requested start"
    )

    def ingest(lo: datetime, hi: datetime, done_before: int) -> IngestReport:
        advance = (lambda r: progress(done_before + r.fetched, report.expected)) if progress else None
        return pipeline.ingest(key, lo, hi, window=chunk, progress=advance)

    if detected is None:
        detect_series(key, store=store, ledger=ledger, start=start, end=end, now=clock)
    if force:
        report.expected = tf.count(start, end)
        report.absorb(ingest(start, end, 0))
    else:
        with unit_of_work(ledger) as repos:
            market = repos.markets.get_or_create(key)
            due = due_gaps(
                repos.session,
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
                key, gap_id, lo, hi, ingest=ingest, report=report, store=store, ledger=ledger, now=clock, policy=policy
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
    except _FATAL_ERRORS as exc:
        with unit_of_work(ledger) as repos:
            record_failure(repos.session, repos.gaps.get(gap_id), exc, now=now)
        raise
    except Exception as exc:
        # Whatever else one gap raises (a source error, the quality gate, a row the ledger refuses, a bug) is
        # that gap's failure: recorded with backoff, so it is neither retried on every run nor allowed to
        # stop the other gaps. Store and lock failures above stop the backfill: nothing else could succeed.
        report.failed += 1
        report.errors.append(f"[{lo.isoformat()}, {hi.isoformat()}): {describe(exc)}")
        with unit_of_work(ledger) as repos:
            record_failure(repos.session, repos.gaps.get(gap_id), exc, now=now)
        log.warning("gap %s [%s, %s) failed: %s", key, lo, hi, describe(exc))
        return
    report.absorb(result)
    with unit_of_work(ledger) as repos:
        session = repos.session
        gap = repos.gaps.get(gap_id)
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
