"""Which series each derived tier is computed from, and which of its buckets a write of base candles touches.

Tiers whose buckets divide a day (5m .. 1d) are computed from the base series directly, all from one read of
the base. Longer tiers (1w, 1M) are computed from the coarsest such tier the market derives (normally 1d),
with :func:`~marketkeeper.tiers.resample.resample_tier`: the same candles as from the base, from ~1/1440 of
the rows, so an hour of new 1m data never re-reads a month of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from marketkeeper.markets import MarketSpec
from marketkeeper.tiers.resample import check_derivable
from marketkeeper.timeframes import TIMEFRAMES, Timeframe, TimeframeError

__all__ = ["divides_a_day", "source_of", "touched_buckets", "unsettled_range"]

_DAY_NS: Final = 86_400 * 10**9


def divides_a_day(tf: Timeframe) -> bool:
    """True for fixed timeframes whose buckets tile every UTC day (1m .. 1d)."""
    return tf.is_fixed and _DAY_NS % tf.nanoseconds == 0


def source_of(market: MarketSpec, tier: Timeframe) -> Timeframe:
    """The series ``tier`` is computed from: the base, or for a tier longer than a day the coarsest
    day-dividing tier of ``market`` that makes it (the base when there is none)."""
    if divides_a_day(tier):
        return market.base_timeframe
    candidates = [
        t for t in market.tiers if divides_a_day(t) and TIMEFRAMES.index(t.value) < TIMEFRAMES.index(tier.value)
    ]
    for candidate in sorted(candidates, key=lambda t: TIMEFRAMES.index(t.value), reverse=True):
        try:
            check_derivable(candidate, tier)
        except TimeframeError:
            continue
        return candidate
    return market.base_timeframe


def touched_buckets(tier: Timeframe, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The open times ``[lo, hi)`` of the ``tier`` buckets holding any base open time in ``[start, end)``."""
    if end <= start:
        return start, start
    return tier.floor(start), tier.ceil(end)


def unsettled_range(tier: Timeframe, start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime] | None:
    """The part of base range ``[start, end)`` whose ``tier`` buckets have not closed at ``now`` (so were not
    written, and stay pending); ``None`` when every one of them closed."""
    open_from = tier.floor(now)  # the bucket holding ``now`` is the first one still open
    if open_from >= end:
        return None
    return max(start, open_from), end
