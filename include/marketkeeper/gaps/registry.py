"""The persistent gap registry over ``candle_gaps``: recording detections idempotently, outcomes, what is due.

Life cycle of a row (``market``, ``timeframe``, ``[start, end)``):

* ``open``: detected and not filled yet. New rows, and the remainders of a partly filled row, start here.
* ``filled``: every candle of the range is now present, whichever path wrote it; ``resolved_at`` is set.
* ``partially_filled``: some candles of the range arrived, others did not. The row keeps its original range
  for history (``resolved_at`` set) and each still-missing run becomes its own ``open`` row, which inherits
  ``first_seen`` (the hole has been known since then) but starts with no attempts.
* ``source_empty``: the source returned nothing for the range on ``source_empty_after`` attempts in a row
  (an exchange outage or a market closure). Kept visible; retried only on request or after a long backoff.
* ``failed``: the last attempt raised; retried with exponential backoff on ``attempts`` and ``last_attempt``.

Rows that are ``open``, ``failed`` or ``source_empty`` are *active*. A detection only judges the part of an
active row inside its window; outside it nothing is known, so that part still counts as missing. A hole that
reappears with exactly the range of a resolved row reuses that row (the unique constraint allows one row per
range), reopened with its attempts reset.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy.orm import Session

from marketkeeper.gaps.detect import Gap
from marketkeeper.ledger import CandleGap, GapStatus, Market
from marketkeeper.repositories.gaps import GapRepository
from marketkeeper.repositories.markets import MarketRepository
from marketkeeper.timeframes import Timeframe, check_range, ensure_utc

__all__ = [
    "ACTIVE_STATUSES",
    "DetectionReport",
    "RetryPolicy",
    "due_gaps",
    "list_gaps",
    "record_detection",
    "record_empty",
    "record_failure",
    "record_remaining",
]

#: Statuses of holes that are still missing candles.
ACTIVE_STATUSES: Final = (GapStatus.OPEN, GapStatus.FAILED, GapStatus.SOURCE_EMPTY)

Range = tuple[datetime, datetime]


@dataclass(frozen=True)
class RetryPolicy:
    """When a gap is attempted again.

    :param source_empty_after: empty answers in a row before a gap becomes ``source_empty``.
    :param failed_backoff: the wait after the first failure; it doubles with every further attempt.
    :param failed_backoff_max: the longest wait between two attempts of a ``failed`` gap.
    :param source_empty_backoff: how long a ``source_empty`` gap rests before it is tried again unasked.
    """

    source_empty_after: int = 3
    failed_backoff: timedelta = timedelta(hours=1)
    failed_backoff_max: timedelta = timedelta(days=7)
    source_empty_backoff: timedelta = timedelta(days=30)

    def failed_wait(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` attempts of which the last one failed."""
        doublings = min(max(attempts - 1, 0), 30)
        return min(self.failed_backoff * (2**doublings), self.failed_backoff_max)


@dataclass
class DetectionReport:
    """What :func:`record_detection` changed; the lists hold the rows (flushed, with ids)."""

    opened: list[CandleGap] = field(default_factory=list)
    filled: list[CandleGap] = field(default_factory=list)
    partially_filled: list[CandleGap] = field(default_factory=list)
    unchanged: list[CandleGap] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "opened": len(self.opened),
            "filled": len(self.filled),
            "partially_filled": len(self.partially_filled),
            "unchanged": len(self.unchanged),
        }


def _subtract(ranges: Iterable[Range], cuts: Sequence[Range]) -> list[Range]:
    """``ranges`` minus the union of ``cuts`` (sorted by start, disjoint)."""
    starts = [c[0] for c in cuts]
    out: list[Range] = []
    for lo, hi in ranges:
        cursor = lo
        i = max(bisect.bisect_right(starts, lo) - 1, 0)
        while i < len(cuts) and cuts[i][0] < hi:
            c_lo, c_hi = cuts[i]
            if c_hi > cursor:
                if c_lo > cursor:
                    out.append((cursor, c_lo))
                cursor = max(cursor, c_hi)
            i += 1
        if cursor < hi:
            out.append((cursor, hi))
    return out


def _intersect(rng: Range, pieces: Sequence[Range]) -> list[Range]:
    """``rng`` intersected with ``pieces`` (sorted by start, disjoint)."""
    lo, hi = rng
    starts = [p[0] for p in pieces]
    out: list[Range] = []
    i = max(bisect.bisect_right(starts, lo) - 1, 0)
    while i < len(pieces) and pieces[i][0] < hi:
        p_lo, p_hi = max(pieces[i][0], lo), min(pieces[i][1], hi)
        if p_lo < p_hi:
            out.append((p_lo, p_hi))
        i += 1
    return out


def _rows(session: Session, market: Market, timeframe: str, statuses: Sequence[GapStatus]) -> list[CandleGap]:
    return GapRepository(session).of_series(market.id, timeframe, statuses)


def _open_row(
    session: Session,
    market: Market,
    tf: Timeframe,
    rng: Range,
    *,
    first_seen: datetime,
    existing: dict[Range, CandleGap],
) -> CandleGap:
    """An ``open`` row for ``rng``: a new one, or the resolved row that had exactly this range, reopened."""
    row = existing.get(rng)
    missing = tf.count(*rng)
    if row is None:
        row = CandleGap(
            market_id=market.id,
            timeframe=str(tf),
            start=rng[0],
            end=rng[1],
            missing_count=missing,
            status=GapStatus.OPEN,
            attempts=0,
            first_seen=first_seen,
        )
        GapRepository(session).add(row)
        existing[rng] = row
        return row
    row.status = GapStatus.OPEN
    row.missing_count = missing
    row.attempts = 0
    row.resolved_at = None
    row.last_error = None
    return row


def _resolved_by_range(session: Session, market: Market, timeframe: str) -> dict[Range, CandleGap]:
    rows = _rows(session, market, timeframe, (GapStatus.FILLED, GapStatus.PARTIALLY_FILLED))
    return {(r.start, r.end): r for r in rows}


def _settle(
    session: Session,
    market: Market,
    tf: Timeframe,
    row: CandleGap,
    remaining: list[Range],
    *,
    now: datetime,
    existing: dict[Range, CandleGap],
    report: DetectionReport,
) -> list[CandleGap]:
    """Apply what is still missing of ``row`` to it: unchanged, filled, or partially filled and split."""
    if remaining == [(row.start, row.end)]:
        report.unchanged.append(row)
        return [row]
    row.resolved_at = now
    if not remaining:
        row.status = GapStatus.FILLED
        report.filled.append(row)
        return []
    row.status = GapStatus.PARTIALLY_FILLED
    report.partially_filled.append(row)
    children = [_open_row(session, market, tf, rng, first_seen=row.first_seen, existing=existing) for rng in remaining]
    report.opened.extend(children)
    return children


def record_detection(
    session: Session,
    market: Market,
    timeframe: Timeframe | str,
    gaps: Sequence[Gap],
    window: Range,
    *,
    now: datetime | None = None,
) -> DetectionReport:
    """Bring the registry in line with one detection of ``market``'s ``timeframe`` series over ``window``.

    Idempotent: recording the same detection twice changes nothing the second time. Holes already recorded
    keep their row (and attempts); holes now filled by any path are marked ``filled``; holes that shrank are
    ``partially_filled`` with their rest in new ``open`` rows; new holes get ``open`` rows.

    :param session: a ledger session; the caller commits.
    :param market: the market row (flushed, so it has an id).
    :param timeframe: the series' timeframe.
    :param gaps: :func:`~marketkeeper.gaps.find_gaps` over ``window``.
    :param window: the ``[start, end)`` the detection covered.
    :param now: the clock for ``first_seen``/``resolved_at`` (default: now).
    """
    tf = Timeframe.parse(timeframe)
    window = check_range(*window)
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    detected = sorted((g.start, g.end) for g in gaps)
    report = DetectionReport()
    existing = _resolved_by_range(session, market, str(tf))
    active = _rows(session, market, str(tf), ACTIVE_STATUSES)
    for row in active:
        rng = (row.start, row.end)
        outside = _subtract([rng], [window])
        remaining = sorted(_intersect(rng, detected) + outside)
        _settle(session, market, tf, row, _merge(remaining), now=clock, existing=existing, report=report)
    known = sorted((r.start, r.end) for r in active)
    for rng in _subtract(detected, _merge(known)):
        report.opened.append(_open_row(session, market, tf, rng, first_seen=clock, existing=existing))
    GapRepository(session).save()
    return report


def _merge(ranges: Sequence[Range]) -> list[Range]:
    """Sorted, touching or overlapping ranges joined."""
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def record_remaining(
    session: Session, gap: CandleGap, remaining: Sequence[Gap], *, now: datetime | None = None
) -> DetectionReport:
    """Record a backfill attempt of ``gap`` that wrote candles: ``remaining`` is what is still missing in it.

    The row becomes ``filled`` (nothing remains) or ``partially_filled`` with the rest as new ``open`` rows;
    when nothing changed at all use :func:`record_empty` instead.
    """
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    tf = Timeframe.parse(gap.timeframe)
    gap.attempts += 1
    gap.last_attempt = clock
    gap.last_error = None
    market = MarketRepository(session).get(gap.market_id)
    existing = _resolved_by_range(session, market, gap.timeframe)
    ranges = _merge(_intersect((gap.start, gap.end), sorted((g.start, g.end) for g in remaining)))
    report = DetectionReport()
    _settle(session, market, tf, gap, ranges, now=clock, existing=existing, report=report)
    GapRepository(session).save()
    return report


def record_empty(
    session: Session, gap: CandleGap, *, policy: RetryPolicy | None = None, now: datetime | None = None
) -> CandleGap:
    """Record an attempt on which the source returned nothing for ``gap``; after enough, ``source_empty``."""
    policy = policy or RetryPolicy()
    gap.attempts += 1
    gap.last_attempt = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    gap.last_error = "the source returned no candles for this range"
    if gap.status == GapStatus.SOURCE_EMPTY or gap.attempts >= policy.source_empty_after:
        gap.status = GapStatus.SOURCE_EMPTY
    else:
        gap.status = GapStatus.OPEN
    GapRepository(session).save()
    return gap


def record_failure(
    session: Session, gap: CandleGap, error: BaseException | str, *, now: datetime | None = None
) -> CandleGap:
    """Record an attempt on ``gap`` that raised: ``failed``, with the error's first line, retried with backoff."""
    gap.attempts += 1
    gap.last_attempt = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    text = (
        error
        if isinstance(error, str)
        else (f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    )
    gap.last_error = text[:2000]
    gap.status = GapStatus.FAILED
    GapRepository(session).save()
    return gap


def is_due(gap: CandleGap, *, now: datetime, policy: RetryPolicy, retry_source_empty: bool = False) -> bool:
    """Whether a backfill should attempt ``gap`` at ``now`` (see :func:`due_gaps`)."""
    if gap.status == GapStatus.OPEN:
        return True
    last = gap.last_attempt
    if gap.status == GapStatus.FAILED:
        return last is None or last + policy.failed_wait(gap.attempts) <= now
    if gap.status == GapStatus.SOURCE_EMPTY:
        return retry_source_empty or last is None or last + policy.source_empty_backoff <= now
    return False


def due_gaps(
    session: Session,
    *,
    market: Market | None = None,
    timeframe: Timeframe | str | None = None,
    now: datetime | None = None,
    retry_source_empty: bool = False,
    policy: RetryPolicy | None = None,
    within: Range | None = None,
) -> list[CandleGap]:
    """The gaps a backfill should attempt now, oldest range first.

    ``open`` gaps always; ``failed`` ones once their backoff (``failed_backoff`` doubled per attempt, capped)
    has passed since ``last_attempt``; ``source_empty`` ones when ``retry_source_empty`` or after
    ``source_empty_backoff``.

    :param market: only this market's gaps.
    :param timeframe: only this timeframe's gaps.
    :param within: only gaps overlapping this ``[start, end)``.
    """
    clock = ensure_utc(now, "now") if now is not None else datetime.now(UTC)
    policy = policy or RetryPolicy()
    rows = GapRepository(session).in_statuses(
        ACTIVE_STATUSES,
        market_id=market.id if market is not None else None,
        timeframe=str(Timeframe.parse(timeframe)) if timeframe is not None else None,
        within=check_range(*within) if within is not None else None,
    )
    return [g for g in rows if is_due(g, now=clock, policy=policy, retry_source_empty=retry_source_empty)]


def list_gaps(
    session: Session,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    status: GapStatus | str | None = None,
) -> list[tuple[Market, CandleGap]]:
    """The registry, filtered, with each gap's market; ordered by market, timeframe and start."""
    return GapRepository(session).with_markets(
        exchange=exchange,
        symbol=symbol,
        timeframe=str(Timeframe.parse(timeframe)) if timeframe is not None else None,
        status=GapStatus(status) if status is not None else None,
    )
