"""A seeded generator of plausible candles for demos and tests: the same seed gives the same candles, always.

Every 1m candle is a pure function of (seed, exchange, symbol, open time): a daily geometric random walk from
2020-01-01 with a Brownian bridge inside each day, each day drawn from its own seeded generator. Longer
timeframes are aggregated from those 1m candles, so ``1h`` candles are exactly the roll-up of the ``1m``
ones, and any range or chunking yields identical values.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import SeriesKey, candle_frame
from marketkeeper.sources.base import CandleBatch, CandleSource
from marketkeeper.timeframes import Timeframe, check_range, ensure_utc, to_ns

__all__ = ["SyntheticSource"]

_MINUTES_PER_DAY: Final = 1440
_NS_PER_MINUTE: Final = 60_000_000_000
_NS_PER_DAY: Final = _MINUTES_PER_DAY * _NS_PER_MINUTE
# Day 0 of the walk, where the price is ``start_price``: 2020-01-01 in days since 1970.
_REFERENCE_DAY: Final = 18262
_BLOCK_DAYS: Final = 1024
# SeedSequence takes non-negative words only; days before the reference are shifted by this.
_SHIFT: Final = 2**31
_TAG_DAILY: Final = 1
_TAG_INTRADAY: Final = 2
# Keeps one generated chunk near 16 MB of minute data whatever the timeframe.
_MAX_MINUTES_PER_CHUNK: Final = 400_000
_ONE_MINUTE: Final = Timeframe.parse("1m")


def _series_id(exchange: str, symbol: str) -> int:
    digest = hashlib.sha256(f"{exchange}\x1f{symbol}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@lru_cache(maxsize=256)
def _daily_block(seed: int, series: int, block: int) -> npt.NDArray[np.float64]:
    """Standard normal daily-walk steps of days ``block * 1024 .. + 1023`` (relative to the reference)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, series, _TAG_DAILY, block + _SHIFT]))
    return rng.standard_normal(_BLOCK_DAYS)


class SyntheticSource(CandleSource):
    """Deterministic plausible OHLCV: ``high >= max(open, close)``, ``low <= min(open, close)``,
    ``volume >= 0`` and each candle's open equal to the previous candle's close.

    :param seed: the same seed gives the same candles for the same series and open time.
    :param holes: ``(start, end)`` ranges whose candles (open times in ``[start, end)``) are left out.
    :param start_price: the price on 2020-01-01 00:00 UTC, where the walk is anchored.
    :param daily_volatility: standard deviation of the daily log return.
    :param minute_volatility: standard deviation of the 1m log return inside a day.
    :param base_volume: median base-asset volume of a 1m candle.
    :param price_decimals: prices are rounded to this many decimals (default: about six significant digits).
    :param chunk_size: candles per yielded batch (each batch has a fixed cost, about 3 ms for its frame, so a
        small one would make the source a tenth of an ingestion's time: 50,000 1m candles are 3 MB).
    :param clock: the current time, to leave out candles that have not closed yet.
    """

    def __init__(
        self,
        seed: int,
        *,
        holes: Sequence[tuple[datetime, datetime]] = (),
        start_price: float = 30_000.0,
        daily_volatility: float = 0.03,
        minute_volatility: float = 0.0008,
        base_volume: float = 10.0,
        price_decimals: int | None = None,
        chunk_size: int = 50_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not start_price > 0 or not base_volume > 0:
            raise ValueError("start_price and base_volume must be positive")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.seed = seed
        self.holes = tuple(check_range(hole_start, hole_end) for hole_start, hole_end in holes)
        self.start_price = start_price
        self.daily_volatility = daily_volatility
        self.minute_volatility = minute_volatility
        self.base_volume = base_volume
        self.price_decimals = (
            price_decimals if price_decimals is not None else min(8, max(2, 5 - math.floor(math.log10(start_price))))
        )
        self.chunk_size = chunk_size
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return f"synthetic:{self.seed}"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        start, end = check_range(start, end)
        tf = key.timeframe
        closed_before = tf.floor(ensure_utc(self._clock(), "clock()"))
        opens = tf.range_ns(start, max(start, min(end, closed_before)))
        if len(opens) and self.holes:
            in_hole = np.zeros(len(opens), dtype=bool)
            for hole_start, hole_end in self.holes:
                in_hole |= (opens >= to_ns(hole_start)) & (opens < to_ns(hole_end))
            opens = opens[~in_hole]
        series = _series_id(key.exchange, key.symbol)
        minutes_per_candle = tf.microseconds // 60_000_000 if tf.is_fixed else 31 * _MINUTES_PER_DAY
        per_chunk = max(1, min(self.chunk_size, _MAX_MINUTES_PER_CHUNK // minutes_per_candle))
        for first in range(0, len(opens), per_chunk):
            chunk = opens[first : first + per_chunk]
            yield CandleBatch(self._candles(series, tf, chunk))

    def _candles(self, series: int, tf: Timeframe, opens: npt.NDArray[np.int64]) -> pd.DataFrame:
        """Candles opening at ``opens`` (ascending, aligned), rolled up from the 1m candles they span."""
        last_close = to_ns(tf.next_open(_dt(int(opens[-1]))))
        first_day, last_day = int(opens[0]) // _NS_PER_DAY, (last_close - 1) // _NS_PER_DAY
        days = [self._minute_day(series, day) for day in range(first_day, last_day + 1)]
        minute_ns = first_day * _NS_PER_DAY + np.arange(len(days) * _MINUTES_PER_DAY, dtype=np.int64) * _NS_PER_MINUTE
        o, h, lo, c, v = (np.concatenate([d[i] for d in days]) for i in range(5))
        begin = np.searchsorted(minute_ns, opens)
        if tf == _ONE_MINUTE:
            o, h, lo, c, v = o[begin], h[begin], lo[begin], c[begin], v[begin]
        else:
            if tf.is_fixed:
                stop = np.searchsorted(minute_ns, opens + tf.nanoseconds)
            else:
                stop = np.searchsorted(minute_ns, [to_ns(tf.next_open(_dt(int(t)))) for t in opens])
            # reduceat over [begin0, stop0, begin1, ...] reduces each candle's minutes at the even slots.
            bounds = np.empty(2 * len(opens), dtype=np.intp)
            bounds[0::2], bounds[1::2] = begin, stop
            o, c = o[begin], c[stop - 1]
            h = np.maximum.reduceat(np.append(h, 0.0), bounds)[0::2]
            lo = np.minimum.reduceat(np.append(lo, 0.0), bounds)[0::2]
            v = np.round(np.add.reduceat(np.append(v, 0.0), bounds)[0::2], 4)
        typical = (o + h + lo + c) / 4
        return candle_frame(
            opens, (o, h, lo, c, v), quote_volume=np.round(v * typical, 2), trade_count=np.rint(v * 7).astype(np.int64)
        )

    def _minute_day(self, series: int, day: int) -> tuple[npt.NDArray[np.float64], ...]:
        """open, high, low, close, volume of the 1440 minutes of ``day`` (days since 1970)."""
        return _minute_day(
            self.seed, series, day, self.start_price, self.daily_volatility, self.minute_volatility,
            self.base_volume, self.price_decimals,
        )  # fmt: skip


@lru_cache(maxsize=64)
def _minute_day(
    seed: int,
    series: int,
    day: int,
    start_price: float,
    daily_volatility: float,
    minute_volatility: float,
    base_volume: float,
    decimals: int,
) -> tuple[npt.NDArray[np.float64], ...]:
    relative = day - _REFERENCE_DAY
    start_log, end_log = (_daily_log(seed, series, relative + i) * daily_volatility for i in (0, 1))
    rng = np.random.default_rng(np.random.SeedSequence([seed, series, _TAG_INTRADAY, relative + _SHIFT]))
    steps = rng.standard_normal(_MINUTES_PER_DAY) * minute_volatility
    wicks = np.abs(rng.standard_normal((2, _MINUTES_PER_DAY))) * minute_volatility * 0.6
    noise = rng.standard_normal(_MINUTES_PER_DAY)
    # A Brownian bridge pins the first and last minute boundary to the daily walk, so days join up.
    walk = np.concatenate(([0.0], np.cumsum(steps)))
    fraction = np.arange(_MINUTES_PER_DAY + 1) / _MINUTES_PER_DAY
    log_price = start_log + fraction * (end_log - start_log) + walk - fraction * walk[-1]
    boundary = np.round(start_price * np.exp(log_price), decimals)
    o, c = boundary[:-1], boundary[1:]
    # Rounding is monotone, so rounded wicks still enclose the rounded open and close.
    h = np.round(np.maximum(o, c) * np.exp(wicks[0]), decimals)
    lo = np.round(np.minimum(o, c) * np.exp(-wicks[1]), decimals)
    move = np.abs(np.log(c / o)) / minute_volatility
    v = np.round(base_volume * np.exp(0.5 * noise) * (0.5 + 0.5 * move), 4)
    for array in (o, h, lo, c, v):
        array.flags.writeable = False
    return o, h, lo, c, v


def _daily_log(seed: int, series: int, relative_day: int) -> float:
    """The walk's log price (in daily volatilities) at 00:00 of ``relative_day``: the steps from day 0."""
    if relative_day == 0:
        return 0.0
    lo, hi = (0, relative_day) if relative_day > 0 else (relative_day, 0)
    total = 0.0
    for block in range(lo // _BLOCK_DAYS, (hi - 1) // _BLOCK_DAYS + 1):
        steps = _daily_block(seed, series, block)
        first = max(lo, block * _BLOCK_DAYS) - block * _BLOCK_DAYS
        last = min(hi, (block + 1) * _BLOCK_DAYS) - block * _BLOCK_DAYS
        total += float(steps[first:last].sum())
    return total if relative_day > 0 else -total


def _dt(ns: int) -> datetime:
    return pd.Timestamp(ns, tz="UTC").to_pydatetime()
