"""Latest closed candle, write notifications and ingestion watermarks in Redis.

Redis is a cache here, never the system of record: callers store candles first, then call
:meth:`CandleCache.publish_written`, and treat its failure as a cache failure, not a lost write.

Keys (under the client's prefix; ``{series}`` is ``exchange:symbol:timeframe``):

- ``candle:latest:{series}``: a hash of the newest closed candle (``open_time`` ISO, ``open_time_ms``, prices,
  volume). A backfill of older candles never replaces a newer one; a corrected candle at the same open time
  does.
- ``candle:watermark:{series}``: epoch milliseconds of the close of the newest candle written (the exclusive
  end of what is stored, never the end of a requested range that held no candles); it only moves forward.
- channel ``candles:{series}``: one JSON message per successful write (series, range, rows, latest candle) and
  per deletion (``"deleted": true``, series, range, rows).
- ``candle:version:{series}``: the series' cache version, bumped atomically by every :meth:`~CandleCache.
  publish_written` and :meth:`~CandleCache.publish_deleted`. Read caches (:mod:`marketkeeper.marketdata.cache`)
  put it in their keys, so an entry made before a write is never read after it. A missing version (a new
  series, an evicted key) starts at the current time in microseconds, never at a number an old entry may carry.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import pandas as pd

from marketkeeper.candles import OPEN_TIME, REQUIRED_COLUMNS, SeriesKey
from marketkeeper.redis_client import RedisClient
from marketkeeper.timeframes import ensure_utc, to_ms

# Bump a series' cache version; a missing one restarts at `start`, the caller's clock in microseconds.
_BUMP_VERSION = """
local function bump(key, start)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, start)
  end
  return redis.call('INCR', key)
end
"""

# Set-if-not-older in one round trip, so a concurrent backfill of old candles cannot overwrite a newer latest
# candle (a correction of the same candle does), and the watermark only moves forward; the version is bumped in
# the same script, so no reader can see the new candles' announcement without the new version.
_PUBLISH_SCRIPT = (
    _BUMP_VERSION
    + """
local newer = 0
local t = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'open_time_ms') or '-1')
if t >= current then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4, #ARGV - 1))
  newer = 1
end
local wm = tonumber(ARGV[2])
if wm > tonumber(redis.call('GET', KEYS[2]) or '-1') then
  redis.call('SET', KEYS[2], ARGV[2])
end
bump(KEYS[4], ARGV[#ARGV])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return newer
"""
)

_DELETE_SCRIPT = (
    _BUMP_VERSION
    + """
bump(KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""
)


@dataclass(frozen=True)
class LatestCandle:
    """The newest closed candle of a series as Redis holds it."""

    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def _version_start() -> str:
    # Far above any count of bumps an earlier incarnation of the key reached, so an old entry never matches.
    return str(time.time_ns() // 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CandleCache:
    """Publishes written candles to Redis.

    :param client: the namespaced Redis client (its prefix keeps these keys apart from other users of Redis).
    """

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self._script = client.raw.register_script(_PUBLISH_SCRIPT)
        self._delete_script = client.raw.register_script(_DELETE_SCRIPT)

    def latest_key(self, key: SeriesKey) -> str:
        return self.client.key("candle", "latest", str(key))

    def watermark_key(self, key: SeriesKey) -> str:
        return self.client.key("candle", "watermark", str(key))

    def channel(self, key: SeriesKey) -> str:
        return self.client.key("candles", str(key))

    def version_key(self, key: SeriesKey) -> str:
        return self.client.key("candle", "version", str(key))

    def publish_written(self, key: SeriesKey, frame: pd.DataFrame, *, start: datetime, end: datetime) -> bool:
        """Record that ``frame`` (closed candles of ``key`` in ``[start, end)``) was stored.

        Updates the latest-candle hash unless Redis holds a newer one, moves the watermark to the close of the
        frame's last candle, and publishes a message on the series channel. Returns whether the latest candle
        was set.

        :raises redis.RedisError: Redis failed; the candles are stored regardless.
        """
        if frame.empty:
            return False
        last = frame.loc[frame[OPEN_TIME].idxmax()]
        open_time = last[OPEN_TIME].to_pydatetime()
        fields = {name: repr(float(last[name])) for name in REQUIRED_COLUMNS if name != OPEN_TIME}
        fields |= {"open_time": open_time.isoformat(), "open_time_ms": str(to_ms(open_time))}
        message = json.dumps(
            {
                "series": {"exchange": key.exchange, "symbol": key.symbol, "timeframe": str(key.timeframe)},
                "start": ensure_utc(start, "start").isoformat(),
                "end": ensure_utc(end, "end").isoformat(),
                "rows": len(frame),
                "latest": fields,
            }
        )
        pairs = [item for pair in fields.items() for item in pair]
        newer = self._script(
            keys=[self.latest_key(key), self.watermark_key(key), self.channel(key), self.version_key(key)],
            args=[
                fields["open_time_ms"],
                str(to_ms(key.timeframe.next_open(open_time))),
                message,
                *pairs,
                _version_start(),
            ],
        )
        return bool(newer)

    def publish_deleted(self, key: SeriesKey, *, start: datetime, end: datetime, rows: int) -> None:
        """Record that the candles of ``key`` in ``[start, end)`` were deleted (retention, a repair): bumps the
        series' version, so no cached read from before the deletion is served after it, and announces it.

        The latest candle and the watermark stay: they say how far the series was ingested, not what is kept.

        :raises redis.RedisError: Redis failed; the deletion stands regardless.
        """
        message = json.dumps(
            {
                "series": {"exchange": key.exchange, "symbol": key.symbol, "timeframe": str(key.timeframe)},
                "start": ensure_utc(start, "start").isoformat(),
                "end": ensure_utc(end, "end").isoformat(),
                "rows": rows,
                "deleted": True,
            }
        )
        self._delete_script(keys=[self.version_key(key), self.channel(key)], args=[message, _version_start()])

    def version(self, key: SeriesKey) -> int:
        """The series' cache version: it changes with every write or deletion announced for ``key``.

        A series never announced gets its first version here (set only if still missing, so a concurrent
        writer's bump is kept).

        :raises redis.RedisError: Redis failed.
        """
        name = self.version_key(key)
        raw = self.client.raw.get(name)
        if raw is None:
            self.client.raw.set(name, _version_start(), nx=True)
            raw = self.client.raw.get(name)
        return int(cast(bytes, raw))

    def latest(self, key: SeriesKey) -> LatestCandle | None:
        """The newest closed candle Redis holds for ``key``, or None if none was published."""
        raw = self.client.raw.hgetall(self.latest_key(key))
        if not raw:
            return None
        values = {_text(k): _text(v) for k, v in raw.items()}
        return LatestCandle(
            open_time=datetime.fromtimestamp(int(values["open_time_ms"]) / 1000, tz=UTC),
            open=float(values["open"]),
            high=float(values["high"]),
            low=float(values["low"]),
            close=float(values["close"]),
            volume=float(values["volume"]),
        )

    def watermark(self, key: SeriesKey) -> datetime | None:
        """Up to when (exclusive) ``key`` has been ingested, or None if never."""
        raw = self.client.raw.get(self.watermark_key(key))
        return None if raw is None else datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
