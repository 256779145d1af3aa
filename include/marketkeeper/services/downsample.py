"""Use case: recompute a market's derived tiers over a range of base open times, from the stored base series.

``marketkeeper downsample``, the ``ohlcv_downsample`` tasks (on the candle Asset events of ingestion and
backfill) and the daily reconciliation of pending downsamples all call :func:`downsample_market`.

Exactly the buckets of each tier that hold a base open time of the range are recomputed (closed ones only),
under the base series' lock, so no base write lands between the read and the tiers' writes. Every base write
is recorded beforehand in ``pending_downsamples`` (by the ingestion pipeline); a recomputation settles the rows
it covered, and keeps pending the tiers whose buckets had not closed yet. Retention reads those rows: a base
range with a pending row is not deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from marketkeeper.candles import SOURCE_COUNT, SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.markets import MarketSpec
from marketkeeper.services.policy import LockPolicy
from marketkeeper.services.writer import series_writer
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.tiers.plan import source_of, touched_buckets, unsettled_range
from marketkeeper.tiers.resample import TierBuckets, bucket_ranges
from marketkeeper.timeframes import Timeframe, check_range

if TYPE_CHECKING:
    from marketkeeper.services.batch import BatchReport, Checkpoint

__all__ = [
    "DownsampleReport",
    "DownsampleRequest",
    "TierWrite",
    "choose_tiers",
    "downsample_market",
    "downsample_markets",
    "pending_requests",
    "requests_from_events",
]

log = logging.getLogger("marketkeeper.downsample")


@dataclass(frozen=True)
class DownsampleRequest:
    """Recompute ``tiers`` (default: every tier of ``market``) over base open times ``[start, end)``."""

    market: MarketSpec
    start: datetime
    end: datetime
    tiers: tuple[Timeframe, ...] | None = None


@dataclass(frozen=True)
class TierWrite:
    """What one tier got: ``buckets`` written over ``[start, end)``, ``incomplete`` of them short of base candles."""

    timeframe: Timeframe
    start: datetime
    end: datetime
    buckets: int
    incomplete: int


@dataclass
class DownsampleReport:
    """The tiers one recomputation wrote, and how many pending rows it settled."""

    key: SeriesKey
    start: datetime
    end: datetime
    tiers: list[TierWrite] = field(default_factory=list)
    settled: int = 0

    @property
    def buckets(self) -> int:
        return sum(t.buckets for t in self.tiers)

    def as_dict(self) -> dict[str, Any]:
        return {
            "market": str(self.key),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "buckets": self.buckets,
            "settled": self.settled,
            "tiers": {str(t.timeframe): {"buckets": t.buckets, "incomplete": t.incomplete} for t in self.tiers},
        }


def choose_tiers(market: MarketSpec, wanted: Iterable[str | Timeframe] | None) -> tuple[Timeframe, ...]:
    """``wanted`` (spellings or timeframes) checked against the tiers ``market`` derives; ``None``: all of them.

    :raises ConfigurationError: a timeframe the market does not derive, naming the ones it does.
    """
    tiers = market.tiers
    if wanted is None:
        return tiers
    chosen = {Timeframe.parse(t) for t in wanted}
    unknown = sorted(str(t) for t in chosen - set(tiers))
    if unknown:
        declared = ", ".join(map(str, tiers)) or "none"
        raise ConfigurationError(f"{market.key} does not derive {', '.join(unknown)}; its tiers are {declared}")
    return tuple(t for t in tiers if t in chosen)


def downsample_market(
    config: StoreConfig,
    request: DownsampleRequest,
    *,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
    stores: StoreSet | None = None,
    progress: Callable[[TierWrite], None] | None = None,
) -> DownsampleReport:
    """Recompute the buckets of each requested tier that hold a base open time in the request's range.

    Tiers that divide a day come from one read of the base series, longer ones from their source tier (see
    :mod:`marketkeeper.tiers.plan`); only closed buckets (closed at ``now``) are written, none before the
    series' retention horizon (its base is gone: those buckets are final). Every tier's buckets are computed
    first and written together (:meth:`~marketkeeper.stores.base.CandleStore.write_many`: one statement or
    request when they are few); then the Redis cache is told of each tier written, as ingestion does, and the
    pending rows covered are settled.

    :raises ConfigurationError: a requested tier the market does not derive.
    :raises SeriesLockedError: another writer kept the base series past the lock policy's wait.
    :raises CandleStoreError: a read or write failed (the pending rows stay: a retry recomputes them).
    """
    from marketkeeper.repositories import unit_of_work

    market = request.market
    start, end = check_range(request.start, request.end)
    tiers = choose_tiers(market, request.tiers)
    clock = now or datetime.now(UTC)
    base = market.key
    report = DownsampleReport(key=base, start=start, end=end)
    with series_writer(config, base, policy, stores=stores) as (opened, lock):
        with unit_of_work(opened.ledger) as repos:
            upto = repos.tiers.last_id(base)
            kept = repos.tiers.horizons(base.exchange, base.symbol)
            horizons = {tf: kept.get(str(tf)) for tf in (base.timeframe, *tiers)}
        made_from = {t: source_of(market, t) for t in tiers}
        direct = [t for t in tiers if made_from[t] == base.timeframe]
        base_frame = _read_base(opened, base, direct, start, end, horizons[base.timeframe])
        spans: dict[Timeframe, tuple[datetime, datetime]] = {}
        for tier in tiers:
            lo, hi = touched_buckets(tier, start, end)
            floor = horizons.get(made_from[tier]) or horizons[base.timeframe]
            if floor is not None:
                lo = min(max(lo, tier.ceil(floor)), hi)
            spans[tier] = (lo, hi)
        # Every tier's buckets first, then one write of them all (one statement on PostgreSQL, one request on
        # InfluxDB). The day-dividing tiers come from one pass over the base; a longer tier is made from one of
        # them (1w and 1M from 1d), whose stored candles over their spans are read once, with this run's fresh
        # buckets laid over them.
        made = bucket_ranges(
            base_frame, str(base.timeframe), [(str(t), *spans[t]) for t in direct], closed_before=clock
        )
        derived: dict[Timeframe, TierBuckets] = dict(zip(direct, made, strict=True))
        for source in dict.fromkeys(made_from[t] for t in tiers if made_from[t] != base.timeframe):
            longer = [t for t in tiers if made_from[t] == source]
            stored = _read_source(opened, market.tier_key(source), [spans[t] for t in longer], base_frame)
            fresh = derived.get(source)
            made = bucket_ranges(
                stored,
                str(source),
                [(str(t), *spans[t]) for t in longer],
                base=str(base.timeframe),
                overlay=None if fresh is None else fresh.frame,
                closed_before=clock,
            )
            derived.update(zip(longer, made, strict=True))
        lock.ensure_held()
        # The buckets go to the store as the arrays they were computed in (no frame built and checked again).
        store = opened.candles
        written = store.write_prepared([derived[t].prepared(market.tier_key(t), store=store.name) for t in tiers])
        for tier, count in zip(tiers, written, strict=True):
            report.tiers.append(_announced(opened, market.tier_key(tier), derived[tier], count, *spans[tier]))
            if progress is not None:
                progress(report.tiers[-1])
        unsettled = {str(t): unsettled_range(t, start, end, clock) for t in market.tiers}
        with unit_of_work(opened.ledger) as repos:
            report.settled = repos.tiers.settle(
                base, (start, end), tiers=[str(t) for t in tiers], unsettled=unsettled, upto_id=upto
            )
    log.info(
        "%s [%s, %s): %d bucket(s) in %d tier(s)", base, start.isoformat(), end.isoformat(), report.buckets, len(tiers)
    )
    return report


def _read_base(
    stores: StoreSet,
    key: SeriesKey,
    direct: Sequence[Timeframe],
    start: datetime,
    end: datetime,
    horizon: datetime | None,
) -> pd.DataFrame:
    """One read of the base over every bucket the day-dividing tiers touch (the coarsest one's span)."""
    if not direct or end <= start:
        return stores.candles.read(key, start, start)
    spans = [touched_buckets(t, start, end) for t in direct]
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    if horizon is not None:
        lo = min(max(lo, horizon), hi)
    return stores.candles.read(key, lo, hi)


def _read_source(
    stores: StoreSet, source: SeriesKey, spans: Sequence[tuple[datetime, datetime]], base_frame: pd.DataFrame
) -> pd.DataFrame:
    """The candles of the ``source`` tier (those with a ``source_count``) over the union of ``spans`` (those of
    the tiers made from it), in one read."""
    wanted = [(lo, hi) for lo, hi in spans if hi > lo]
    if not wanted:
        return base_frame.iloc[:0]
    frame = stores.candles.read(source, min(s[0] for s in wanted), max(s[1] for s in wanted))
    derived = frame[SOURCE_COUNT].notna().to_numpy()
    return frame if derived.all() else frame[derived].reset_index(drop=True)


def _announced(
    stores: StoreSet, key: SeriesKey, derived: TierBuckets, written: int, lo: datetime, hi: datetime
) -> TierWrite:
    """What the tier got, after telling the Redis cache of it (when there is one and anything was written)."""
    incomplete = derived.incomplete() if written else 0
    if written and stores.cache is not None:
        _announce(stores, key, derived.frame, lo, hi)
    return TierWrite(key.timeframe, lo, hi, written, incomplete)


def _announce(stores: StoreSet, key: SeriesKey, derived: pd.DataFrame, lo: datetime, hi: datetime) -> None:
    """Tell Redis (latest candle, watermark, series version); a Redis failure is logged, the tier stays written."""
    import redis

    from marketkeeper.errors import MarketkeeperError, first_line

    assert stores.cache is not None
    try:
        stores.cache.publish_written(key, derived, start=lo, end=hi)
    except (redis.RedisError, MarketkeeperError) as exc:
        log.warning("tier %s written, but the Redis update failed: %s", key, first_line(exc))


# --- which ranges to recompute ------------------------------------------------------------------------------


def requests_from_events(events: Iterable[Mapping[str, Any]], markets: Sequence[MarketSpec]) -> list[DownsampleRequest]:
    """One request per declared market with tiers that the candle Asset events' ``extra`` name, covering the
    written ranges (``[start, end)`` of open times, as ingestion and backfill announce them); overlapping or
    touching ranges of a market are joined, disjoint ones stay apart. Events of other series are ignored."""
    by_key = {m.key: m for m in markets if m.tiers}
    ranges: dict[SeriesKey, list[tuple[datetime, datetime]]] = {}
    for extra in events:
        exchange, _, symbol = str(extra.get("market", "")).partition(":")
        try:
            key = SeriesKey.of(exchange, symbol, str(extra.get("timeframe")))
            start = datetime.fromisoformat(str(extra["start"]))
            stop = datetime.fromisoformat(str(extra["end"]))
        except (KeyError, ValueError) as exc:
            log.warning("ignoring a candle event without a usable series or range (%s): %s", exc, dict(extra))
            continue
        if key in by_key:
            ranges.setdefault(key, []).append(check_range(start, stop))
    requests = []
    for key, spans in ranges.items():
        for lo, hi in _joined(spans):
            requests.append(DownsampleRequest(by_key[key], lo, hi))
    return requests


def pending_requests(config: StoreConfig, markets: Sequence[MarketSpec]) -> list[DownsampleRequest]:
    """The daily reconciliation's work: every pending downsample of the declared markets, by tier. Rows of
    series whose market derives no tier are dropped (nothing to recompute)."""
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    by_key = {m.key: m for m in markets}
    requests: list[DownsampleRequest] = []
    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            rows = repos.tiers.pending()
            keys = {SeriesKey.of(r.exchange, r.symbol, r.timeframe) for r in rows}
            for key in sorted(keys, key=str):
                market = by_key.get(key)
                if market is None or not market.tiers:
                    repos.tiers.forget(key)
                    continue
                mine = [
                    r
                    for r in rows
                    if (r.exchange, r.symbol, r.timeframe) == (key.exchange, key.symbol, str(key.timeframe))
                ]
                for tier in sorted({r.tier for r in mine}, key=lambda t: t or ""):
                    spans = [(r.start, r.end) for r in mine if r.tier == tier]
                    chosen = None if tier is None else (Timeframe.parse(tier),)
                    if chosen is not None and chosen[0] not in market.tiers:
                        continue  # a tier no longer declared; its rows are settled by the next full run
                    requests.extend(DownsampleRequest(market, lo, hi, chosen) for lo, hi in _joined(spans))
    finally:
        engine.dispose()
    return requests


def _joined(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def downsample_markets(
    config: StoreConfig,
    requests: Sequence[DownsampleRequest],
    *,
    checkpoint: Checkpoint | None = None,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
) -> BatchReport[DownsampleReport]:
    """:func:`downsample_market` for each request on one set of stores, through the batch machinery of
    :mod:`marketkeeper.services.batch` (a request's failure is its outcome; the batch fails at the end)."""
    from marketkeeper.services.batch import run_batch  # with ingestion's imports: loaded by a batch alone

    clock = now or datetime.now(UTC)

    def work(request: DownsampleRequest) -> Callable[[StoreSet], DownsampleReport]:
        return lambda stores: downsample_market(config, request, now=clock, policy=policy, stores=stores)

    labels = [f"{r.market.key} [{r.start.isoformat()}, {r.end.isoformat()})" for r in requests]
    return run_batch(config, [(label, work(r)) for label, r in zip(labels, requests, strict=True)], checkpoint)
