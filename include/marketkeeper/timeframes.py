"""Candle timeframes (ccxt's spellings ``1m`` .. ``1M``): parsing, bucket alignment and counting, in UTC.

A candle's timestamp is its bucket's open time. Fixed timeframes align to the Unix epoch, ``1w`` to
Monday 00:00 UTC and ``1M`` to the first of the month 00:00 UTC. The ``*_ns`` methods do the same on int64
arrays of nanoseconds since the epoch, for DataFrame work.

This module is also the one home of the timezone check (:func:`ensure_utc`, :class:`NaiveDatetimeError`), of
range validation (:func:`check_range`, :data:`SUPPORTED_SPAN`) and of the exact integer converters
:func:`to_ns` and :func:`to_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from marketkeeper.errors import MarketkeeperError

if TYPE_CHECKING:
    # numpy is imported by the vectorised methods that use it: naming a series (a SeriesKey holds a Timeframe)
    # is all that ``marketkeeper candles --format csv`` needs of this module.
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "EPOCH",
    "SUPPORTED_SPAN",
    "TIMEFRAMES",
    "InvalidRangeError",
    "NaiveDatetimeError",
    "Timeframe",
    "TimeframeError",
    "check_range",
    "ensure_utc",
    "to_ms",
    "to_ns",
]

#: Every timeframe marketkeeper accepts, shortest first.
TIMEFRAMES: Final[tuple[str, ...]] = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w", "1M",
)  # fmt: skip

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: The times a range may cover, ``[start, end]``: no candle opened before the Unix epoch, and pandas'
#: nanosecond timestamps (which every candle frame uses) end in April 2262.
SUPPORTED_SPAN: Final = (EPOCH, datetime(2262, 1, 1, tzinfo=UTC))
_US_PER_UNIT: Final = {"m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}
# The epoch was a Thursday; the first Monday after it is 4 days later.
_WEEK_OFFSET_US: Final = 4 * 86_400_000_000
#: numpy's NaT as int64, and the int64 range (``np.iinfo(np.int64)``).
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_NAT: Final = _INT64_MIN


class TimeframeError(MarketkeeperError, ValueError):
    """A timeframe spelling marketkeeper does not know, or an operation a timeframe cannot do."""


class NaiveDatetimeError(MarketkeeperError, ValueError):
    """A datetime without a timezone: marketkeeper never guesses which zone a timestamp is in."""


class InvalidRangeError(MarketkeeperError, ValueError):
    """A time range whose start is after its end, or that leaves :data:`SUPPORTED_SPAN`."""


def ensure_utc(dt: datetime, name: str = "datetime") -> datetime:
    """Return ``dt`` converted to UTC; raise :class:`NaiveDatetimeError` if it has no timezone.

    :param dt: an aware ``datetime`` (a pandas ``Timestamp`` works too).
    :param name: what the value is, for the error message.
    """
    if not isinstance(dt, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(dt).__name__}: {dt!r}")
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        raise NaiveDatetimeError(
            f"{name} {dt.isoformat()} has no timezone; pass an aware UTC datetime, "
            "e.g. datetime(2024, 1, 1, tzinfo=UTC)"
        )
    if dt.tzinfo is UTC and type(dt) is datetime:
        return dt
    utc = dt.astimezone(UTC)
    # pandas Timestamps are normalized to plain datetimes so results compare and hash alike.
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)


def check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Validate a half-open range ``[start, end)`` and return it in UTC; an empty range is allowed.

    :raises NaiveDatetimeError: ``start`` or ``end`` has no timezone.
    :raises InvalidRangeError: ``start`` is after ``end``, or either lies outside :data:`SUPPORTED_SPAN`.
    """
    start, end = ensure_utc(start, "start"), ensure_utc(end, "end")
    lo, hi = SUPPORTED_SPAN
    for name, value in (("start", start), ("end", end)):
        if not lo <= value <= hi:
            raise InvalidRangeError(
                f"{name} {value.isoformat()} is outside the supported span {lo.isoformat()} .. {hi.isoformat()} "
                "(no candle opened before the Unix epoch; nanosecond timestamps end in 2262)"
            )
    if start > end:
        raise InvalidRangeError(f"start {start.isoformat()} is after end {end.isoformat()}")
    return start, end


def to_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (what exchanges speak), rounded down, exactly."""
    return _to_us(ensure_utc(dt)) // 1000


def to_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, in integer arithmetic (a float loses microseconds).

    A pandas ``Timestamp`` keeps its nanoseconds. This is the one converter to int64 nanoseconds, the unit of
    candle frames and InfluxDB.

    :raises NaiveDatetimeError: ``dt`` has no timezone.
    :raises InvalidRangeError: ``dt`` is outside what int64 nanoseconds hold (1677-09-21 .. 2262-04-11).
    """
    ns = _to_us(ensure_utc(dt, "datetime")) * 1000 + int(getattr(dt, "nanosecond", 0))
    if not _INT64_MIN < ns <= _INT64_MAX:  # int64 min is NaT
        raise InvalidRangeError(f"{dt.isoformat()} is outside what int64 nanoseconds since 1970 can hold")
    return ns


def _to_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _month_index(dt: datetime) -> int:
    return dt.year * 12 + dt.month - 1


def _month_start(index: int) -> datetime:
    year, month0 = divmod(index, 12)
    return datetime(year, month0 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Timeframe:
    """One candle timeframe. Build it with :meth:`parse`; ``str(tf)`` is its ccxt spelling."""

    value: str
    amount: int
    unit: str

    @staticmethod
    def parse(value: str | Timeframe) -> Timeframe:
        """Return the timeframe spelled ``value``; raise :class:`TimeframeError` naming the valid ones."""
        if isinstance(value, Timeframe):
            return value
        if not isinstance(value, str):
            raise TimeframeError(f"a timeframe must be a string such as '1m', got {type(value).__name__}")
        return _parse(value)

    def __str__(self) -> str:
        return self.value

    @property
    def is_fixed(self) -> bool:
        """True when every candle lasts the same time (all but ``1M``)."""
        return self.unit != "M"

    @property
    def microseconds(self) -> int:
        """The length of one candle in microseconds; ``1M`` has none and raises :class:`TimeframeError`."""
        if self.unit == "M":
            raise TimeframeError("1M has no fixed length (months differ); use add() or range()")
        return self.amount * _US_PER_UNIT[self.unit]

    @property
    def milliseconds(self) -> int:
        """The length of one candle in milliseconds (fixed timeframes only)."""
        return self.microseconds // 1000

    @property
    def nanoseconds(self) -> int:
        """The length of one candle in nanoseconds (fixed timeframes only)."""
        return self.microseconds * 1000

    @property
    def duration(self) -> timedelta:
        """The length of one candle (fixed timeframes only)."""
        return timedelta(microseconds=self.microseconds)

    @property
    def _offset_us(self) -> int:
        return _WEEK_OFFSET_US if self.unit == "w" else 0

    def floor(self, dt: datetime) -> datetime:
        """The open time of the candle containing ``dt``."""
        dt = ensure_utc(dt)
        if self.unit == "M":
            return datetime(dt.year, dt.month, 1, tzinfo=UTC)
        us = _to_us(dt)
        return _from_us(us - (us - self._offset_us) % self.microseconds)

    def is_aligned(self, dt: datetime) -> bool:
        """True when ``dt`` is a candle open time of this timeframe."""
        dt = ensure_utc(dt)
        return self.floor(dt) == dt

    def add(self, dt: datetime, n: int) -> datetime:
        """The open time ``n`` candles after (``n < 0``: before) the candle containing ``dt``.

        For an aligned ``dt`` this is ``dt`` plus ``n`` candle lengths, month-correct for ``1M``.
        """
        opened = self.floor(dt)
        if self.unit == "M":
            return _month_start(_month_index(opened) + n)
        return opened + timedelta(microseconds=n * self.microseconds)

    def next_open(self, dt: datetime) -> datetime:
        """The open time of the candle after the one containing ``dt`` (the latter's close time)."""
        return self.add(dt, 1)

    def ceil(self, dt: datetime) -> datetime:
        """The first open time at or after ``dt``."""
        opened = self.floor(dt)
        return opened if opened == ensure_utc(dt) else self.add(opened, 1)

    def count(self, start: datetime, end: datetime) -> int:
        """How many open times lie in ``[start, end)``."""
        start, end = check_range(start, end)
        first, stop = self.ceil(start), self.ceil(end)
        if self.unit == "M":
            return max(0, _month_index(stop) - _month_index(first))
        return max(0, (_to_us(stop) - _to_us(first)) // self.microseconds)

    def range(self, start: datetime, end: datetime) -> list[datetime]:
        """The open times in ``[start, end)``, ascending."""
        start, end = check_range(start, end)
        first = self.ceil(start)
        n = self.count(start, end)
        if self.unit == "M":
            base = _month_index(first)
            return [_month_start(base + i) for i in range(n)]
        step = self.duration
        return [first + i * step for i in range(n)]

    def range_ns(self, start: datetime, end: datetime) -> npt.NDArray[np.int64]:
        """The open times in ``[start, end)`` as int64 nanoseconds since the epoch (fast for long ranges)."""
        import numpy as np

        start, end = check_range(start, end)
        if self.unit == "M":
            return np.array([_to_us(t) * 1000 for t in self.range(start, end)], dtype=np.int64)
        first = _to_us(self.ceil(start)) * 1000
        return first + np.arange(self.count(start, end), dtype=np.int64) * self.nanoseconds

    def last_closed_open(self, now: datetime) -> datetime:
        """The open time of the newest candle already closed at ``now`` (closed means its end <= now)."""
        return self.add(now, -1)

    def is_closed(self, open_time: datetime, now: datetime) -> bool:
        """True when the candle opening at ``open_time`` has closed by ``now``."""
        return self.next_open(open_time) <= ensure_utc(now, "now")

    def floor_ns(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorized :meth:`floor` on int64 nanoseconds since the epoch; NaT (int64 min) stays NaT."""
        import numpy as np

        ns = np.asarray(values).astype(np.int64, copy=False)
        nat = ns == _NAT
        if self.unit == "M":
            floored = ns.view("datetime64[ns]").astype("datetime64[M]").astype("datetime64[ns]").view(np.int64)
        else:
            offset = self._offset_us * 1000
            floored = ns - (ns - offset) % self.nanoseconds
        if nat.any():
            floored = np.where(nat, _NAT, floored)
        return floored

    def is_aligned_ns(self, values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Vectorized :meth:`is_aligned` on int64 nanoseconds since the epoch; NaT is never aligned."""
        import numpy as np

        ns = np.asarray(values).astype(np.int64, copy=False)
        result: npt.NDArray[np.bool_] = (self.floor_ns(ns) == ns) & (ns != _NAT)
        return result


@lru_cache(maxsize=64)
def _parse(value: str) -> Timeframe:
    if value not in TIMEFRAMES:
        raise TimeframeError(f"unknown timeframe {value!r}; valid timeframes are {', '.join(TIMEFRAMES)}")
    return Timeframe(value=value, amount=int(value[:-1]), unit=value[-1])
