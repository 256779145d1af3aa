"""Ingestion of one series over ``[start, end)``: source -> quality gate -> candle store -> Redis.

The service functions (:mod:`marketkeeper.services.ingest`, :mod:`marketkeeper.services.gaps`) call
:func:`ingest_range` under their series lock; it checks the lock is still held before every window's write.
It is idempotent over its range: the store upserts, the quality gate replaces the evidence it recorded for the same
series and window, and Redis only moves forward. A failed store write raises, so the task fails and a retry
redoes the range; a Redis failure is logged and recorded as a system event, never a lost write.

Throughput: a Great Expectations run has a fixed cost (~0.2 s on a 2-core machine, pure Python) next to a small
per-row one, so windows are large (:data:`DEFAULT_WINDOW`), and the next window is fetched and checked in a
worker thread while the current one is written (the store's server works on the other core). The writer stays
in the calling thread and keeps the order of every window: evidence recorded, threshold enforced, lock checked,
then the next window released to the worker, candles written, Redis told, progress reported. So nothing is
fetched for a window before the previous one passed its lock check, and two windows at most are in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
import redis
import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import OPEN_TIME, SeriesKey, empty_frame
from marketkeeper.errors import MarketkeeperError
from marketkeeper.ledger import session_scope
from marketkeeper.ledger.models.enums import EventSeverity
from marketkeeper.locks import SeriesLock
from marketkeeper.quality import GateResult, check_candles, enforce_threshold, record_gate
from marketkeeper.repositories import unit_of_work
from marketkeeper.sources.base import CandleSource, Reject, rejects_frame
from marketkeeper.stores.base import CandleStore
from marketkeeper.timeframes import check_range

if TYPE_CHECKING:
    from marketkeeper.store_set import StoreSet

log = logging.getLogger(__name__)

#: Candles fetched, checked and written together; bounds memory (measured: a year of 1m candles peaks about
#: 100 MB above the process's baseline, the window written plus the next one and the gate's working copies) and
#: the size of one quality run. Sized by cost: Great Expectations' fixed ~0.2 s a run is then under a fifth of
#: the window's store write, and a year of 1m candles still makes four windows to overlap.
DEFAULT_WINDOW: Final = 150_000


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
        # A window reaching past ``end`` ends there; adding ``size`` candles regardless could pass year 9999
        # (150,000 months).
        opened = tf.floor(cursor)
        nxt = end if tf.count(opened, end) <= size else min(tf.add(opened, size), end)
        if nxt <= cursor:  # cursor sits inside the last bucket before end
            nxt = end
        yield cursor, nxt
        cursor = nxt


@dataclass(frozen=True)
class Pipeline:
    """Where one series' candles come from and go, and the rules they pass: everything an ingestion of a range
    needs besides the range. Services build one per call (:meth:`over` an open store set); backfills reuse it
    for every gap, so the wiring of :func:`ingest_range` is written once, here.

    :param lock: the series lock the caller holds; checked before every window's write.
    :param now: the clock for "closed" (default: the current time at each call).
    """

    source: CandleSource
    store: CandleStore
    ledger: sa.Engine
    cache: CandleCache | None = None
    max_failed_fraction: float = 0.01
    now: datetime | None = None
    airflow: Mapping[str, str] | None = None
    lock: SeriesLock | None = None
    prechecked: Mapping[tuple[datetime, datetime], GateResult] | None = None

    @classmethod
    def over(cls, stores: StoreSet, source: CandleSource, **rules: Any) -> Pipeline:
        """A pipeline into ``stores`` (candle store, ledger, Redis cache) from ``source``."""
        return cls(source, stores.candles, stores.ledger, stores.cache, **rules)

    def ingest(
        self,
        key: SeriesKey,
        start: datetime,
        end: datetime,
        *,
        window: int = DEFAULT_WINDOW,
        progress: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """:func:`ingest_range` of ``key`` over ``[start, end)`` through this pipeline."""
        return ingest_range(
            key,
            start,
            end,
            source=self.source,
            store=self.store,
            ledger=self.ledger,
            cache=self.cache,
            max_failed_fraction=self.max_failed_fraction,
            window=window,
            now=self.now,
            airflow=self.airflow,
            progress=progress,
            lock=self.lock,
            prechecked=self.prechecked,
        )


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
    prechecked: Mapping[tuple[datetime, datetime], GateResult] | None = None,
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
    :param prechecked: windows ``(start, end)`` the caller already fetched and ran through the gate (a batch
        of markets screened together, :func:`~marketkeeper.quality.check_windows`): their results are used
        instead of fetching and checking again; everything after the check is the same.
    :raises SeriesLockLostError: the lock was lost (expired, its connection died): nothing more is written.
    :raises QualityGateError: a window failed the gate beyond the threshold (its evidence is recorded).
    :raises SourceError: the source could not deliver (names source, series and range).
    :raises CandleStoreError: the store write failed.
    """
    start, end = check_range(start, end)
    report = IngestReport(key=key, start=start, end=end)
    clock = now or datetime.now(UTC)

    def check(window_start: datetime, window_end: datetime, stop: threading.Event) -> GateResult:
        if prechecked is not None and (window_start, window_end) in prechecked:
            return prechecked[(window_start, window_end)]
        frame, rejects = fetch_window(source, key, window_start, window_end, stop)
        return check_candles(key, frame, now=clock, max_failed_fraction=max_failed_fraction, rejects=rejects)

    with _CheckAhead(windows(key, start, end, window), check) as checked:
        for window_start, window_end, result in checked.windows():
            with session_scope(ledger) as session:
                record_gate(session, key, window_start, window_end, result, source=source.name, airflow=airflow)
                _mark_pending_downsample(session, key, result.passed)
            enforce_threshold(result, key, window_start, window_end, max_failed_fraction)
            if lock is not None:
                lock.ensure_held()
            checked.check_next()
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


Window = tuple[datetime, datetime, GateResult]


class _Stopped(Exception):
    """The caller stopped listening while the worker fetched: the window is abandoned, not an error."""


class _CheckAhead:
    """Fetches and checks windows in a worker thread, each once the caller allowed it (:meth:`check_next`).

    The caller takes a checked window, clears it to be written (lock check), calls :meth:`check_next` and
    writes it, while the worker fetches and checks the next one. An error in the worker (a source failure, a
    gate that could not evaluate) is raised in the caller at the window it belongs to, after every earlier window
    was written, as a loop without the thread would. Leaving the block (done, or a failed write) stops the
    worker and waits for it, so the source is never used after :func:`ingest_range` returns.
    """

    _POLL: Final = 0.1

    def __init__(
        self,
        bounds: Iterable[tuple[datetime, datetime]],
        check: Callable[[datetime, datetime, threading.Event], GateResult],
    ) -> None:
        self._bounds = bounds
        self._check = check
        # Never more than one item waits: the worker checks a window only on a permit, one per window taken.
        self._results: queue.SimpleQueue[Window | Exception | None] = queue.SimpleQueue()
        self._permits = threading.Semaphore(1)  # the first window needs no permission
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="marketkeeper-ingest-check", daemon=True)

    def __enter__(self) -> _CheckAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def windows(self) -> Iterator[Window]:
        """The checked windows, in order; raises what the worker raised, where it raised it."""
        while (item := self._results.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item

    def check_next(self) -> None:
        """Let the worker fetch and check the next window (call it once the current one may be written)."""
        self._permits.release()

    def _work(self) -> None:
        try:
            for window_start, window_end in self._bounds:
                while not self._permits.acquire(timeout=self._POLL):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._results.put((window_start, window_end, self._check(window_start, window_end, self._stop)))
        except _Stopped:
            return
        except Exception as exc:  # not swallowed: handed to the caller, who raises it
            self._results.put(exc)
            return
        self._results.put(None)


def fetch_window(
    source: CandleSource, key: SeriesKey, start: datetime, end: datetime, stop: threading.Event | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The candles ``source`` gives for ``[start, end)`` as one frame, and the rows it rejected (or ``None``).

    :param stop: set by a caller that stopped listening: the fetch ends at the next page.
    """
    frames: list[pd.DataFrame] = []
    rejects: list[Reject] = []
    for batch in source.fetch_batches(key, start, end):
        if stop is not None and stop.is_set():  # a slow source (an exchange API) must not hold up a failed call's exit
            raise _Stopped
        if len(batch.frame):
            frames.append(batch.frame)
        rejects.extend(batch.rejects)
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    return frame, (rejects_frame(rejects) if rejects else None)


def _mark_pending_downsample(session: Any, key: SeriesKey, frame: pd.DataFrame) -> None:
    """Record the range about to be written as not yet downsampled, in the evidence's transaction and before
    the store write: a write that then fails leaves a harmless extra row, never a tier stale unbeknownst to
    retention (see :mod:`marketkeeper.services.downsample`)."""
    from marketkeeper.repositories.tiers import TierRepository

    if len(frame):
        times = frame[OPEN_TIME]
        TierRepository(session).mark_written(
            key, times.min().to_pydatetime(), key.timeframe.next_open(times.max().to_pydatetime())
        )


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
