"""What a series holds over a window: the stored ranges, the open gaps, the incomplete buckets of a derived
timeframe and the retention horizon (:func:`series_coverage`). Computed from open times alone (the stores'
``open_times``), never from a second read path; gaps with :mod:`marketkeeper.gaps.detect`, bucket counts with
the tiers' resampler."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import EXPECTED_COUNT, OPEN_TIME, SOURCE_COUNT, SeriesKey
from marketkeeper.gaps.detect import Gap, find_gap_arrays
from marketkeeper.tiers import resample_candles
from marketkeeper.timeframes import Timeframe, check_range

if TYPE_CHECKING:
    import sqlalchemy as sa

    from marketkeeper.marketdata.routing import Market, Route
    from marketkeeper.stores.base import CandleStore

__all__ = ["Coverage", "IncompleteBucket", "StoredRange", "incomplete_buckets", "series_coverage", "stored_ranges"]


@dataclass(frozen=True)
class StoredRange:
    """A run of consecutive candles: open times in ``[start, end)``, ``candles`` of them."""

    start: datetime
    end: datetime
    candles: int


@dataclass(frozen=True)
class IncompleteBucket:
    """A candle of a derived timeframe built from fewer base candles than its bucket spans."""

    open_time: datetime
    source_count: int
    expected_count: int


@dataclass(frozen=True)
class Coverage:
    """The coverage of ``key`` over ``[start, end)``, read from ``source`` (``key`` itself unless resampled).

    ``gaps`` are the missing candles of ``source`` (never filled by the API); ``incomplete`` the buckets of a
    derived or resampled ``key`` with ``source_count < expected_count``; ``retention_horizon`` the open time before
    which retention deleted ``source``'s candles (``None``: it never did), ``retention_days`` how long the
    declaration keeps that timeframe (``None``: forever).
    """

    key: SeriesKey
    source: SeriesKey
    route: str
    start: datetime
    end: datetime
    stored: tuple[StoredRange, ...]
    gaps: tuple[Gap, ...]
    incomplete: tuple[IncompleteBucket, ...]
    retention_horizon: datetime | None
    retention_days: int | None = None

    @property
    def candles(self) -> int:
        return sum(r.candles for r in self.stored)

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    def as_dict(self) -> dict[str, object]:
        def iso(dt: datetime | None) -> str | None:
            return None if dt is None else dt.isoformat()

        return {
            "exchange": self.key.exchange,
            "symbol": self.key.symbol,
            "timeframe": str(self.key.timeframe),
            "source_timeframe": str(self.source.timeframe),
            "route": self.route,
            "start": iso(self.start),
            "end": iso(self.end),
            "candles": self.candles,
            "missing": self.missing,
            "stored": [{"start": iso(r.start), "end": iso(r.end), "candles": r.candles} for r in self.stored],
            "gaps": [{"start": iso(g.start), "end": iso(g.end), "missing": g.missing} for g in self.gaps],
            "incomplete": [
                {"open_time": iso(b.open_time), "source_count": b.source_count, "expected_count": b.expected_count}
                for b in self.incomplete
            ],
            "retention_horizon": iso(self.retention_horizon),
            "retention_days": self.retention_days,
        }


def _utc(ns: npt.NDArray[np.int64]) -> list[datetime]:
    return list(pd.DatetimeIndex(ns.view("datetime64[ns]"), tz="UTC").to_pydatetime())


def stored_ranges(times_ns: npt.NDArray[np.int64], timeframe: Timeframe) -> tuple[StoredRange, ...]:
    """The runs of consecutive open times (ascending, aligned) of ``timeframe``."""
    if len(times_ns) == 0:
        return ()
    times = np.asarray(times_ns, dtype=np.int64)
    if timeframe.is_fixed:
        nexts = times + timeframe.nanoseconds
    else:  # the next calendar month
        months = times.view("datetime64[ns]").astype("datetime64[M]") + np.timedelta64(1, "M")
        nexts = months.astype("datetime64[ns]").view(np.int64)
    breaks = np.flatnonzero(nexts[:-1] != times[1:])
    firsts = np.r_[0, breaks + 1]
    lasts = np.r_[breaks, len(times) - 1]
    return tuple(
        StoredRange(start, end, int(n))
        for start, end, n in zip(_utc(times[firsts]), _utc(nexts[lasts]), lasts - firsts + 1, strict=True)
    )


def gaps_of(times_ns: npt.NDArray[np.int64], timeframe: Timeframe, start: datetime, end: datetime) -> tuple[Gap, ...]:
    """The missing candles of ``timeframe`` in ``[start, end)`` given the stored open times."""
    return tuple(find_gap_arrays(times_ns, timeframe, start, end).to_list())


def incomplete_buckets(
    times_ns: npt.NDArray[np.int64], base: Timeframe, target: Timeframe, *, closed_before: datetime
) -> tuple[IncompleteBucket, ...]:
    """The closed ``target`` buckets the ``base`` open times fill only partly, counted by the tiers' resampler
    (prices are irrelevant to the counts, so zeros stand in for them)."""
    if len(times_ns) == 0:
        return ()
    zeros = np.zeros(len(times_ns))
    frame = pd.DataFrame(
        {
            OPEN_TIME: pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]"), tz="UTC"),
            **{name: zeros for name in ("open", "high", "low", "close", "volume")},
        }
    )
    return from_counts(resample_candles(frame, str(base), str(target), closed_before=closed_before))


def from_counts(frame: pd.DataFrame) -> tuple[IncompleteBucket, ...]:
    """The incomplete buckets of a frame carrying ``source_count``/``expected_count`` (a derived tier's)."""
    if SOURCE_COUNT not in frame.columns or EXPECTED_COUNT not in frame.columns or frame.empty:
        return ()
    source = frame[SOURCE_COUNT].to_numpy(dtype=np.int64, na_value=-1)
    expected = frame[EXPECTED_COUNT].to_numpy(dtype=np.int64, na_value=-1)
    partial = np.flatnonzero((source >= 0) & (expected >= 0) & (source < expected))
    times = frame[OPEN_TIME].iloc[partial].dt.to_pydatetime()
    return tuple(
        IncompleteBucket(t, int(s), int(e))
        for t, s, e in zip(times, source[partial].tolist(), expected[partial].tolist(), strict=True)
    )


def series_coverage(
    store: CandleStore,
    ledger: sa.Engine,
    route: Route,
    market: Market,
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
) -> Coverage:
    """What ``route``'s series holds over ``[start, end)`` (``start`` defaults to the first stored candle,
    ``end`` to the newest closed open time): its source's stored ranges and open gaps, the incomplete buckets
    of a derived or resampled timeframe, the retention horizon (from the ledger) and the declared retention."""
    tf, source_tf = route.key.timeframe, route.source.timeframe
    if start is None:
        start = store.first_open_time(route.source) or tf.floor(now)
    if end is None:
        end = tf.floor(now)
    start, end = check_range(start, end)
    start, end = tf.ceil(start), max(tf.ceil(start), tf.ceil(end))
    closed_end = min(end, source_tf.floor(now))
    times = store.open_times(route.source, start, end)
    incomplete: tuple[IncompleteBucket, ...] = ()
    if route.resampled:
        incomplete = incomplete_buckets(times, source_tf, tf, closed_before=now)
    elif route.derived:
        incomplete = from_counts(store.read(route.source, start, end))
    from marketkeeper.repositories import unit_of_work

    with unit_of_work(ledger) as repos:
        horizon = repos.tiers.horizon(route.source)
    days = [
        spec.retention_days[str(source_tf)]
        for spec in market.specs
        if str(source_tf) in getattr(spec, "retention_days", {})
    ]
    return Coverage(
        key=route.key,
        source=route.source,
        route=route.kind,
        start=start,
        end=end,
        stored=stored_ranges(times, source_tf),
        gaps=gaps_of(times, source_tf, start, max(start, closed_end)),
        incomplete=incomplete,
        retention_horizon=horizon,
        retention_days=min(days) if days else None,
    )
