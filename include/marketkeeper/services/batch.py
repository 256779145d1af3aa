"""Use case: a batch of markets in one job, each through the same single-market service the CLI calls
(:func:`~marketkeeper.services.ingest.ingest_series`, :func:`~marketkeeper.services.gaps.backfill_market`), with
the stores opened once and each series' lock taken in turn.

A scheduled run pays a task's fixed cost (process, imports, a Great Expectations context, store connections)
once per batch instead of once per market, and :func:`ingest_markets` screens the markets' windows through
the quality gate in one Great Expectations run (:func:`~marketkeeper.quality.check_windows`) before writing
each market under its own lock, so a market costs its fetch, its evidence and its write, not a checkpoint run
of its own. What one task per market gave is kept: a market's failure is its
own outcome (the others still run; the batch fails at the end naming each failed market and its cause), and
with a :class:`Checkpoint` each completed market is recorded in the ledger's ``system_events``, so a retry of
the same task redoes only the markets that did not complete and returns what the earlier try recorded for the
others (their Asset events included, which Airflow drops with a failed try).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from marketkeeper.errors import MarketkeeperError, StoreUnavailableError, describe
from marketkeeper.gaps.backfill import BackfillError, BackfillReport
from marketkeeper.ingest import DEFAULT_WINDOW, IngestReport, fetch_window, windows
from marketkeeper.markets import MarketSpec
from marketkeeper.services.gaps import BackfillRequest, backfill_market
from marketkeeper.services.ingest import IngestRequest, ingest_series, series_range
from marketkeeper.services.markets import market_label
from marketkeeper.services.policy import LockPolicy
from marketkeeper.sources.base import CandleSource
from marketkeeper.store_set import StoreConfig, StoreSet

if TYPE_CHECKING:
    from marketkeeper.quality import GateResult

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchFailedError",
    "BatchReport",
    "Checkpoint",
    "MarketOutcome",
    "backfill_markets",
    "batch_markets",
    "ingest_markets",
    "run_batch",
]

log = logging.getLogger("marketkeeper.batch")

R = TypeVar("R")

#: Markets per batch (per task) unless a run or ``MARKETKEEPER_BATCH_SIZE`` says otherwise; see bench/scale.py.
DEFAULT_BATCH_SIZE: Final = 50
#: The largest batch: a retry reads a batch's checkpoints in one page.
MAX_BATCH_SIZE: Final = 1000
MARKET_DONE: Final = "batch_market_done"
BATCH_DONE: Final = "batch_done"


def batch_markets(specs: Sequence[MarketSpec], size: int) -> list[list[MarketSpec]]:
    """``specs`` cut into batches of at most ``size`` markets of one exchange each, in declaration order per
    exchange: a batch calls one exchange, one market at a time, so the ``exchange_api`` pool (one slot per
    task) still bounds the concurrent calls to each exchange."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    ordered = sorted(specs, key=lambda s: s.exchange)  # stable: declaration order within an exchange
    batches: list[list[MarketSpec]] = []
    for _, group in groupby(ordered, key=lambda s: s.exchange):
        markets = list(group)
        batches.extend(markets[i : i + size] for i in range(0, len(markets), size))
    return batches


@dataclass(frozen=True)
class MarketOutcome(Generic[R]):
    """What became of one market of a batch.

    :param label: the series label (``exchange:symbol:timeframe``).
    :param report: the service's report, when the market ran and completed in this try.
    :param error: its one-line cause, when it failed (or was not attempted after a store failed).
    :param recorded: what an earlier try recorded for it (the market completed then and was not redone).
    """

    label: str
    report: R | None = None
    error: str | None = None
    recorded: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class BatchFailedError(MarketkeeperError):
    """Some markets of a batch failed; the others completed (and were recorded, with a checkpoint)."""

    def __init__(self, failed: Sequence[MarketOutcome[Any]], total: int) -> None:
        self.failed = list(failed)
        causes = "; ".join(f"{o.label}: {o.error}" for o in self.failed)
        super().__init__(f"{len(self.failed)} of {total} market(s) failed: {causes}")


@dataclass(frozen=True)
class BatchReport(Generic[R]):
    """Every market's outcome, in the batch's order."""

    outcomes: tuple[MarketOutcome[R], ...]

    @property
    def failed(self) -> list[MarketOutcome[R]]:
        return [o for o in self.outcomes if not o.ok]

    def raise_for_failures(self) -> None:
        """:raises BatchFailedError: naming each failed market and its cause."""
        if self.failed:
            raise BatchFailedError(self.failed, len(self.outcomes))


@dataclass(frozen=True)
class Checkpoint:
    """Where a batch records each market it completed, so a retry of the same job redoes only the rest.

    :param scope: what names the job across its tries (Airflow: dag_id, run_id, task_id, map_index); the
        records of a job are those whose details match it exactly.
    :param attempt: this try's number (Airflow's ``try_number``), from 1.
    :param keep: what of a completed market's report to record (JSON-able); a retry returns it as
        :attr:`MarketOutcome.recorded`.
    """

    scope: Mapping[str, str]
    attempt: int
    keep: Callable[[Any], dict[str, Any]]


def _recorded(stores: StoreSet, checkpoint: Checkpoint) -> dict[str, Mapping[str, Any]]:
    """What earlier tries recorded per completed market; nothing when an earlier try completed the whole
    batch: then this try is a deliberate re-run (a cleared task), and everything is redone."""
    from marketkeeper.repositories import unit_of_work

    if checkpoint.attempt <= 1:
        return {}
    scope = dict(checkpoint.scope)
    with unit_of_work(stores.ledger) as repos:
        if repos.events.matching(BATCH_DONE, scope, limit=1):
            return {}
        rows = repos.events.matching(MARKET_DONE, scope, limit=MAX_BATCH_SIZE)
        # Newest first: the latest record of a market wins.
        return {str(e.details["market"]): e.details["result"] for e in reversed(rows)}


def _record(stores: StoreSet, checkpoint: Checkpoint, event_type: str, message: str, **details: Any) -> None:
    from marketkeeper.ledger.models import EventSeverity
    from marketkeeper.repositories import unit_of_work

    with unit_of_work(stores.ledger) as repos:
        repos.events.log_event(
            event_type,
            EventSeverity.INFO,
            message,
            details={**checkpoint.scope, "attempt": checkpoint.attempt, **details},
        )


def run_batch(
    config: StoreConfig, work: Sequence[tuple[str, Callable[[StoreSet], R]]], checkpoint: Checkpoint | None
) -> BatchReport[R]:
    """Run each market's ``work`` on one set of open stores; a market's exception is its outcome.

    The runner every batch use case wraps in its own typed function (:func:`ingest_markets`,
    :func:`backfill_markets`, :func:`~marketkeeper.services.downsample.downsample_markets`): ``work`` is one
    ``(label, run)`` per market, ``run`` given the open stores; the labels name the markets in the outcomes
    and the checkpoints.

    A store that cannot be reached (:class:`StoreUnavailableError`) ends the batch: the markets after it are
    failed as not attempted instead of each waiting for the same dead store.
    """
    outcomes: list[MarketOutcome[R]] = []
    with StoreSet.open(config) as stores:
        done = _recorded(stores, checkpoint) if checkpoint is not None else {}
        unreachable: str | None = None
        for label, run in work:
            if label in done:
                log.info("%s: completed by an earlier try, not redone", label)
                outcomes.append(MarketOutcome(label, recorded=done[label]))
                continue
            if unreachable is not None:
                outcomes.append(MarketOutcome(label, error=f"not attempted: {unreachable}"))
                continue
            try:
                report = run(stores)
            except StoreUnavailableError as exc:
                log.exception("%s failed; a store is unreachable, the rest of the batch is not attempted", label)
                unreachable = describe(exc)
                outcomes.append(MarketOutcome(label, error=unreachable))
                continue
            except Exception as exc:  # one market's failure is its outcome; the batch fails at the end
                log.exception("%s failed", label)
                outcomes.append(MarketOutcome(label, error=describe(exc)))
                continue
            if checkpoint is not None:
                kept = checkpoint.keep(report)
                _record(stores, checkpoint, MARKET_DONE, f"{label} completed", market=label, result=kept)
            outcomes.append(MarketOutcome(label, report=report))
        batch = BatchReport(tuple(outcomes))
        if checkpoint is not None and not batch.failed:
            _record(stores, checkpoint, BATCH_DONE, f"batch of {len(outcomes)} market(s) completed")
    return batch


def ingest_markets(
    config: StoreConfig,
    requests: Sequence[IngestRequest],
    *,
    airflow: Mapping[str, str] | None = None,
    checkpoint: Checkpoint | None = None,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
) -> BatchReport[IngestReport]:
    """:func:`~marketkeeper.services.ingest.ingest_series` for each request, in order, on one set of stores.

    The requests whose range is one window (an hourly run's) are fetched first and screened together
    (:func:`_screened`); each market is then written under its own lock from its checked window exactly as
    :func:`~marketkeeper.services.ingest.ingest_series` writes any window (evidence, threshold, lock check,
    store, Redis). A market whose fetch or check failed is left to ``ingest_series`` to fetch again and fail
    on its own.

    :param checkpoint: record each completed market, and skip those an earlier try of the job recorded.
    """
    clock = now or datetime.now(UTC)
    screened = _screened(requests, clock)

    def work(i: int, request: IngestRequest) -> Callable[[StoreSet], IngestReport]:
        source, prechecked = screened.get(i, (None, None))
        return lambda stores: ingest_series(
            config,
            request,
            airflow=airflow,
            now=clock,
            policy=policy,
            stores=stores,
            source=source,
            prechecked=prechecked,
        )

    return run_batch(config, [(market_label(r.market), work(i, r)) for i, r in enumerate(requests)], checkpoint)


Screened = tuple[CandleSource, dict[tuple[datetime, datetime], "GateResult"]]


@dataclass(frozen=True)
class _Fetched:
    position: int
    request: IngestRequest
    source: CandleSource
    bounds: tuple[datetime, datetime]
    frame: Any
    rejects: Any


def _screened(requests: Sequence[IngestRequest], now: datetime) -> dict[int, Screened]:
    """The single-window requests fetched and checked in one gate call, by position: the source each was
    fetched from and its checked window. A request that spans several windows (a long backfill) is not
    fetched ahead: it is ingested window by window, its next window fetched while one is written."""
    from marketkeeper.quality import check_windows
    from marketkeeper.sources import make_source

    fetched: list[_Fetched] = []
    for i, request in enumerate(requests):
        spec = request.market
        bounds = list(windows(spec.key, *series_range(request), DEFAULT_WINDOW))
        if len(bounds) != 1:
            continue
        try:
            source = make_source(spec.source, exchange=spec.exchange)
            frame, rejects = fetch_window(source, spec.key, *bounds[0])
        except Exception as exc:  # not lost: ingest_series fetches this market again and fails with the cause
            log.warning("%s: fetch ahead failed (%s); fetched again on its own", spec.key, describe(exc))
            continue
        fetched.append(_Fetched(i, request, source, bounds[0], frame, rejects))
    screened: dict[int, Screened] = {}
    # One gate call per threshold (each result carries its own); a run's markets share one.
    for fraction in sorted({f.request.max_failed_fraction for f in fetched}):
        group = [f for f in fetched if f.request.max_failed_fraction == fraction]
        results = check_windows(
            [(f.request.market.key, f.frame, f.rejects) for f in group], now=now, max_failed_fraction=fraction
        )
        for item, result in zip(group, results, strict=True):
            if isinstance(result, Exception):  # not lost either: checked again, and raised, on its own
                log.warning("%s: check ahead failed (%s)", item.request.market.key, describe(result))
                continue
            screened[item.position] = (item.source, {item.bounds: result})
    return screened


def backfill_markets(
    config: StoreConfig,
    requests: Sequence[BackfillRequest],
    *,
    airflow: Mapping[str, str] | None = None,
    checkpoint: Checkpoint | None = None,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
) -> BatchReport[BackfillReport]:
    """:func:`~marketkeeper.services.gaps.backfill_market` for each request, in order, on one set of stores.

    Failed gaps are not a failed market: they are recorded ``failed`` in the gap registry (retried with backoff)
    and come back in the market's report; a market fails when its backfill raised anything else.
    """

    def work(request: BackfillRequest) -> Callable[[StoreSet], BackfillReport]:
        def run(stores: StoreSet) -> BackfillReport:
            try:
                return backfill_market(config, request, airflow=airflow, now=now, policy=policy, stores=stores)
            except BackfillError as exc:
                return exc.report

        return run

    return run_batch(config, [(market_label(r.market), work(r)) for r in requests], checkpoint)
