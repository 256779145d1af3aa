"""Ingestion of one series over ``[start, end)``: source -> quality gate -> candle store -> Redis.

The service functions (:mod:`marketkeeper.services.ingest`, :mod:`marketkeeper.services.gaps`) call
:func:`ingest_range` under their series lock; it checks the lock is still held before every window's write.
It is idempotent over its range: the store upserts, the quality gate replaces the evidence it recorded for the same
series and window, and Redis only moves forward. A failed store write raises, so the task fails and a retry
redoes the range; a Redis failure is logged and recorded as a system event, never a lost write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import redis
import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import OPEN_TIME, SeriesKey, empty_frame
from marketkeeper.errors import MarketkeeperError
from marketkeeper.ledger import session_scope
from marketkeeper.ledger.models.enums import EventSeverity
from marketkeeper.locks import SeriesLock
from marketkeeper.quality import check_candles, enforce_threshold, record_gate
from marketkeeper.repositories import unit_of_work
from marketkeeper.sources.base import CandleSource, Reject, rejects_frame
from marketkeeper.stores.base import CandleStore
from marketkeeper.timeframes import check_range

log = logging.getLogger(__name__)

#: Candles fetched, checked and written together; bounds memory and the size of one quality run.
DEFAULT_WINDOW = 10_000


@dataclass
class IngestReport:
    """What one ingestion did; ``written + quarantined + skipped == fetched``."""

    key: SeriesKey
    start: datetime
    end: datetime
    fetched: int = 0
    written: int = 0
    quarantined: int = 0
    skipped: int = 0
    first_written: datetime | None = None
    last_written: datetime | None = None
    cache_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "market": f"{self.key.exchange}:{self.key.symbol}",
            "timeframe": str(self.key.timeframe),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "fetched": self.fetched,
            "written": self.written,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
        }


def windows(key: SeriesKey, start: datetime, end: datetime, size: int) -> Iterator[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive windows of at most ``size`` candles."""
    tf = key.timeframe
    cursor = start
    while cursor < end:
        nxt = min(tf.add(tf.floor(cursor), size), end)
        if nxt <= cursor:  # cursor sits inside the last bucket before end
            nxt = end
        yield cursor, nxt
        cursor = nxt


def ingest_range(
    key: SeriesKey,
    start: datetime,
    end: datetime,
    *,
    source: CandleSource,
    store: CandleStore,
    ledger: sa.Engine,
    cache: CandleCache | None = None,
    max_failed_fraction: float = 0.01,
    window: int = DEFAULT_WINDOW,
    now: datetime | None = None,
    airflow: Mapping[str, str] | None = None,
    progress: Callable[[IngestReport], None] | None = None,
    lock: SeriesLock | None = None,
) -> IngestReport:
    """Fetch, check, store and announce the candles of ``key`` with open times in ``[start, end)``.

    :param source: where candles come from; it yields closed candles only.
    :param store: the candle store (InfluxDB or SQL); a failed write raises and fails the caller.
    :param ledger: the ledger engine, for quality runs, quarantined rows and system events.
    :param cache: Redis publication of latest candles and watermarks; ``None`` when Redis is not configured.
    :param max_failed_fraction: above this share of failing rows in a window, raise after recording why.
    :param window: candles per fetch/check/write round.
    :param now: the clock for "not in the future" (default: the current time).
    :param airflow: dag_id/run_id/task_id recorded with each quality run.
    :param progress: called after each window with the running report.
    :param lock: the caller's series lock; checked before every window's write.
    :raises SeriesLockLostError: the lock was lost (expired, its connection died): nothing more is written.
    :raises QualityGateError: a window failed the gate beyond the threshold (its evidence is recorded).
    :raises SourceError: the source could not deliver (names source, series and range).
    :raises CandleStoreError: the store write failed.
    """
    start, end = check_range(start, end)
    report = IngestReport(key=key, start=start, end=end)
    clock = now or datetime.now(UTC)
    for window_start, window_end in windows(key, start, end, window):
        frame, rejects = _fetch(source, key, window_start, window_end)
        result = check_candles(key, frame, now=clock, max_failed_fraction=max_failed_fraction, rejects=rejects)
        with session_scope(ledger) as session:
            record_gate(session, key, window_start, window_end, result, source=source.name, airflow=airflow)
        enforce_threshold(result, key, window_start, window_end, max_failed_fraction)
        if lock is not None:
            lock.ensure_held()
        written = store.write(key, result.passed)
        report.fetched += result.rows_in
        report.written += written
        report.quarantined += result.rows_failed
        report.skipped += result.rows_skipped
        if written:
            times = result.passed[OPEN_TIME]
            first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
            report.first_written = min(report.first_written or first, first)
            report.last_written = max(report.last_written or last, last)
            if cache is not None:
                _announce(cache, ledger, key, result.passed, window_start, window_end, report)
        log.info(
            "%s [%s, %s): %d fetched, %d written, %d quarantined, %d skipped",
            key,
            window_start.isoformat(),
            window_end.isoformat(),
            result.rows_in,
            written,
            result.rows_failed,
            result.rows_skipped,
        )
        if progress is not None:
            progress(report)
    return report


def _fetch(
    source: CandleSource, key: SeriesKey, start: datetime, end: datetime
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    frames: list[pd.DataFrame] = []
    rejects: list[Reject] = []
    for batch in source.fetch_batches(key, start, end):
        if len(batch.frame):
            frames.append(batch.frame)
        rejects.extend(batch.rejects)
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    return frame, (rejects_frame(rejects) if rejects else None)


def _announce(
    cache: CandleCache,
    ledger: sa.Engine,
    key: SeriesKey,
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    report: IngestReport,
) -> None:
    """Publish to Redis; a Redis failure is recorded, because the candles are already stored."""
    try:
        cache.publish_written(key, frame, start=start, end=end)
    except (redis.RedisError, MarketkeeperError) as exc:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("candles of %s stored, but the Redis update failed: %s", key, cause)
        report.cache_errors.append(cause)
        with unit_of_work(ledger) as repos:
            repos.events.create(
                event_type="cache_update_failed",
                severity=EventSeverity.WARNING,
                message=f"candles of {key} in [{start.isoformat()}, {end.isoformat()}) stored; "
                f"Redis update failed: {cause}",
                symbol=key.symbol,
                details={
                    "exchange": key.exchange,
                    "timeframe": str(key.timeframe),
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "rows": len(frame),
                },
            )
