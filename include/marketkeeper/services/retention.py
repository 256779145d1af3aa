"""Use case: delete candles older than each timeframe's declared retention, never a base candle that is not
safely downsampled. ``marketkeeper retention [--dry-run]`` and the ``ohlcv_retention`` DAG call
:func:`apply_retention`.

A series' range is deletable only when every tier computed from it was computed after the latest write to that
range: no pending downsample overlaps it (:mod:`marketkeeper.services.downsample`), and each such tier's
buckets hold exactly the candles the range has (their ``source_count``, bucket by bucket). The first bucket
that fails either check holds back the delete from there on; the plan says so and why. Deleting moves the
series' retention horizon, which gap detection starts from, so a deleted range is never a gap and never
backfilled again. Deletes run in chunks of about a day's worth of rows, each its own short transaction, with
the horizon moved after each, under the base series' lock (the one every writer of the market takes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from marketkeeper.candles import SOURCE_COUNT, SeriesKey, open_time_ns
from marketkeeper.markets import MarketSpec
from marketkeeper.services.policy import LockPolicy
from marketkeeper.services.writer import series_writer
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.tiers.plan import divides_a_day, source_of
from marketkeeper.timeframes import TIMEFRAMES, Timeframe, to_ns

__all__ = ["RetentionItem", "RetentionReport", "apply_retention", "retention_cut"]

log = logging.getLogger("marketkeeper.retention")

_DAY: Final = Timeframe.parse("1d")
#: Rows per delete statement (a transaction of its own): about a day of 1m candles at most.
DELETE_ROWS: Final = 1440 * 7


@dataclass
class RetentionItem:
    """One series' retention: what is (or would be) deleted, and what is held back and why."""

    key: SeriesKey
    days: int
    #: Candles opening before this are past retention.
    cut: datetime
    start: datetime | None = None
    end: datetime | None = None
    rows: int = 0
    held_back: list[str] = field(default_factory=list)
    deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "series": str(self.key),
            "days": self.days,
            "cut": self.cut.isoformat(),
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "rows": self.rows,
            "deleted": self.deleted,
            "held_back": self.held_back,
        }


@dataclass
class RetentionReport:
    items: list[RetentionItem] = field(default_factory=list)
    dry_run: bool = False

    @property
    def deleted(self) -> int:
        return sum(i.deleted for i in self.items)


def retention_cut(tf: Timeframe, days: int, now: datetime) -> datetime:
    """Where retention of ``days`` cuts ``tf`` at ``now``: whole UTC days for timeframes that tile a day (so
    no day-dividing tier's bucket is ever cut in two), the timeframe's own bucket for 1w and 1M."""
    edge = now - timedelta(days=days)
    return _DAY.floor(edge) if divides_a_day(tf) else tf.floor(edge)


def apply_retention(
    config: StoreConfig,
    markets: Sequence[MarketSpec],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    policy: LockPolicy | None = None,
    progress: Callable[[RetentionItem], None] | None = None,
) -> RetentionReport:
    """Plan (and unless ``dry_run``, apply) the retention of every timeframe of ``markets`` that declares one.

    :raises SeriesLockedError: another writer kept a market's base series past the lock policy's wait.
    :raises CandleStoreError: a read or delete failed (chunks already deleted stay deleted, with the horizon
        moved past them; a re-run continues).
    """
    clock = now or datetime.now(UTC)
    report = RetentionReport(dry_run=dry_run)
    for market in markets:
        if not market.retention_days:
            continue
        with series_writer(config, market.key, policy) as (stores, _lock):
            ordered = sorted(market.retention_days.items(), key=lambda item: TIMEFRAMES.index(item[0]))
            for spelling, days in ordered:
                item = _plan(stores, market, Timeframe.parse(spelling), days, clock)
                if not dry_run and item.start is not None and item.end is not None and item.rows:
                    item.deleted = _delete(stores, market, item)
                report.items.append(item)
                if progress is not None:
                    progress(item)
    return report


def _plan(stores: StoreSet, market: MarketSpec, tf: Timeframe, days: int, now: datetime) -> RetentionItem:
    from marketkeeper.repositories import unit_of_work

    key = market.tier_key(tf)
    item = RetentionItem(key=key, days=days, cut=retention_cut(tf, days, now))
    with unit_of_work(stores.ledger) as repos:
        horizon = repos.tiers.horizon(key)
        pending = repos.tiers.pending(market.key) if _dependents(market, tf) else []
    first = stores.candles.first_open_time(key)
    start = first if horizon is None or first is None else max(first, horizon)
    if start is None or start >= item.cut:
        return item
    end = item.cut
    dependents = _dependents(market, tf)
    relevant = [p for p in pending if p.tier is None or Timeframe.parse(p.tier) in dependents]
    overlapping = [p for p in relevant if p.start < end and p.end > start]
    if overlapping:
        first_pending = min(p.start for p in overlapping)
        held = max(start, _DAY.floor(first_pending))
        tiers = sorted({p.tier or "every tier" for p in overlapping})
        item.held_back.append(
            f"[{held.isoformat()}, {end.isoformat()}): written since {', '.join(tiers)} were computed "
            "(pending downsample); run `marketkeeper downsample` or wait for ohlcv_downsample"
        )
        end = held
    for tier in sorted(dependents, key=lambda t: TIMEFRAMES.index(t.value)):
        if end <= start:
            break
        stale = _first_unmatched(stores, market, tf, tier, start, end)
        if stale is not None:
            held = max(start, _DAY.floor(stale) if divides_a_day(tf) else tf.floor(stale))
            item.held_back.append(
                f"[{held.isoformat()}, {end.isoformat()}): tier {tier} does not hold these candles (missing or "
                f"stale from {stale.isoformat()}); run `marketkeeper downsample --to {tier}` over it"
            )
            end = held
    if end > start:
        item.start, item.end = start, end
        item.rows = stores.candles.count(key, start, end)
    return item


def _dependents(market: MarketSpec, tf: Timeframe) -> list[Timeframe]:
    """The tiers computed from series ``tf`` of ``market`` (its base or a tier)."""
    return [t for t in market.tiers if source_of(market, t) == tf and t != tf]


def _first_unmatched(
    stores: StoreSet, market: MarketSpec, source: Timeframe, tier: Timeframe, start: datetime, end: datetime
) -> datetime | None:
    """The open time of the first ``tier`` bucket opening in ``[start, end)`` whose ``source_count`` is not
    the number of base candles its members hold (no such bucket, or another count); ``None`` when all match."""
    lo, hi = tier.floor(start), tier.ceil(end)
    if source == market.base_timeframe:
        times = stores.candles.open_times(market.key, lo, hi)
        weights: npt.NDArray[np.int64] = np.ones(len(times), dtype=np.int64)
    else:
        members = stores.candles.read(market.tier_key(source), lo, hi)
        times = open_time_ns(members)
        weights = members[SOURCE_COUNT].to_numpy(dtype=np.int64, na_value=0)
    buckets = tier.floor_ns(times)
    opens, index = np.unique(buckets, return_inverse=True)
    expected = np.bincount(index, weights=weights).astype(np.int64) if len(opens) else np.zeros(0, dtype=np.int64)
    derived = stores.candles.read(market.tier_key(tier), lo, hi)
    have = dict(
        zip(
            open_time_ns(derived).tolist(),
            derived[SOURCE_COUNT].to_numpy(dtype=np.int64, na_value=-1).tolist(),
            strict=True,
        )
    )
    checked = opens < to_ns(end)
    for open_ns, count in zip(opens[checked].tolist(), expected[checked].tolist(), strict=True):
        if have.get(open_ns) != count:
            return _from_ns(open_ns)
    return None


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)


def _delete(stores: StoreSet, market: MarketSpec, item: RetentionItem) -> int:
    """Delete ``item``'s range in chunks, each its own transaction, moving the horizon after each; drop the gap
    registry's rows wholly before the new horizon; tell the Redis cache."""
    from marketkeeper.repositories import unit_of_work

    assert item.start is not None and item.end is not None
    key = item.key
    tf = key.timeframe
    per_day = (86_400_000_000 // tf.microseconds) if tf.is_fixed and divides_a_day(tf) else 1
    step = timedelta(days=max(1, DELETE_ROWS // max(per_day, 1))) if divides_a_day(tf) else None
    deleted = 0
    chunk_start = item.start
    while chunk_start < item.end:
        chunk_end = min(item.end, _DAY.floor(chunk_start) + step) if step is not None else item.end
        rows = stores.candles.delete_range(key, chunk_start, chunk_end)
        with unit_of_work(stores.ledger) as repos:
            repos.tiers.advance_horizon(key, chunk_end)
        deleted += rows
        if rows and stores.cache is not None:
            _announce(stores, key, chunk_start, chunk_end, rows)
        chunk_start = chunk_end
    with unit_of_work(stores.ledger) as repos:
        _drop_gaps_before(repos, key, item.end)
    log.info("%s: deleted %d candle(s) in [%s, %s)", key, deleted, item.start.isoformat(), item.end.isoformat())
    return deleted


def _drop_gaps_before(repos: Any, key: SeriesKey, horizon: datetime) -> None:
    from marketkeeper.ledger.models import GapStatus

    market = repos.markets.find(key)  # gaps are kept for base series only; a tier has no market row
    if market is None:
        return
    gaps = repos.gaps.in_statuses(list(GapStatus), market_id=market.id, timeframe=str(key.timeframe))
    for gap in gaps:
        if gap.end <= horizon:
            repos.session.delete(gap)


def _announce(stores: StoreSet, key: SeriesKey, start: datetime, end: datetime, rows: int) -> None:
    import redis

    from marketkeeper.errors import MarketkeeperError, first_line

    assert stores.cache is not None
    try:
        stores.cache.publish_deleted(key, start=start, end=end, rows=rows)
    except (redis.RedisError, MarketkeeperError) as exc:
        log.warning("%s: candles deleted, but the Redis update failed: %s", key, first_line(exc))
