"""The read-through Redis cache of candle queries, never stale: each entry's key carries the cache version of
the series it was read from (:meth:`marketkeeper.candle_cache.CandleCache.version`), which every announced
write and deletion bumps atomically *after* the store changed. A reader takes the version *before* it reads
the store, so an entry holds data at least as new as its version; after a write, readers look up the next
version and miss. Entries expire after a TTL and are only kept up to a size bound.

In front of Redis, each provider keeps the frames of its most recent entries in memory (up to ``local_bytes``),
keyed by the same versioned names: a repeat then costs one small ``GET`` of the version instead of moving the
whole answer out of Redis (tens of MB for a year of 1m). It never answers without that version check, so it is
exactly as fresh as Redis; with Redis down it is not used at all.

A Redis failure never reaches the caller: the read goes to the store uncached, one warning is logged per
outage (again only after Redis answered once more), and the figures count it.

Frames travel in a small binary layout of their own (a JSON header, then each column's raw little-endian
bytes): it is as fast as Redis can move bytes, and unlike pickle it runs no code from whoever can write to
Redis; pyarrow, whose IPC format would do, is not installed here.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, cast

import numpy as np
import pandas as pd
import redis

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import OPEN_TIME_DTYPE, SeriesKey
from marketkeeper.errors import MarketkeeperError, first_line

__all__ = ["CandleQueryCache", "decode_frame", "encode_frame"]

log = logging.getLogger(__name__)

_MAGIC: Final = b"MKF1"
#: Memory a provider keeps for the frames of recent entries (a year of 1m candles is about 45 MB).
DEFAULT_LOCAL_BYTES: Final = 256 * 1024 * 1024
_HEAD: Final = struct.Struct("<4sI")


def encode_frame(frame: pd.DataFrame) -> bytes:
    """``frame`` (datetime, float and nullable-integer columns) as bytes :func:`decode_frame` reads back exactly."""
    columns: list[list[str]] = []
    parts: list[bytes] = []
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            columns.append([str(name), "ts"])
            parts.append(series.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8.astype("<i8").tobytes())
        elif isinstance(series.dtype, pd.Int64Dtype):
            array = series.array
            columns.append([str(name), "i8n"])
            parts.append(np.asarray(array.to_numpy(dtype=np.int64, na_value=0), dtype="<i8").tobytes())
            parts.append(np.asarray(array.isna(), dtype=np.bool_).tobytes())
        elif series.dtype == np.float64:
            columns.append([str(name), "f8"])
            parts.append(series.to_numpy(dtype="<f8").tobytes())
        else:
            raise TypeError(f"cannot cache column {name!r} of dtype {series.dtype}")
    header = json.dumps({"rows": len(frame), "columns": columns}).encode()
    return b"".join([_HEAD.pack(_MAGIC, len(header)), header, *parts])


def decode_frame(blob: bytes) -> pd.DataFrame:
    """The frame :func:`encode_frame` wrote.

    :raises ValueError: ``blob`` is not such an encoding (truncated, another format).
    """
    magic, size = _HEAD.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not a cached candle frame")
    header = json.loads(blob[_HEAD.size : _HEAD.size + size])
    rows = int(header["rows"])
    offset = _HEAD.size + size
    out: dict[str, object] = {}

    def take(dtype: str, itemsize: int) -> np.ndarray:
        nonlocal offset
        end = offset + rows * itemsize
        if end > len(blob):
            raise ValueError("cached candle frame is truncated")
        # A copy: the frame is the caller's to modify, and the bytes object is released with it.
        values = np.frombuffer(blob, dtype=dtype, count=rows, offset=offset).copy()
        offset = end
        return values

    for name, kind in header["columns"]:
        if kind == "ts":
            out[name] = pd.Series(pd.DatetimeIndex(take("<i8", 8).view("datetime64[ns]"), tz="UTC")).astype(
                OPEN_TIME_DTYPE
            )
        elif kind == "f8":
            out[name] = take("<f8", 8)
        elif kind == "i8n":
            values = take("<i8", 8)
            out[name] = pd.arrays.IntegerArray(values, take("?", 1))
        else:
            raise ValueError(f"cached candle frame has a column of unknown kind {kind!r}")
    if offset != len(blob):
        raise ValueError("cached candle frame has trailing bytes")
    return pd.DataFrame(out, index=pd.RangeIndex(rows))


class CandleQueryCache:
    """Read-through caching of candle queries in Redis.

    :param cache: the candle cache of the deployment (its client's prefix and the series versions).
    :param ttl: seconds an entry lives.
    :param max_entry_bytes: larger results are served but not cached.
    :param local_bytes: memory for the frames of recent entries in this process (0: none).
    :param on_lookup: told ``hit=True/False`` per lookup; :param on_error: told of each Redis failure.
    """

    def __init__(
        self,
        cache: CandleCache,
        *,
        ttl: float,
        max_entry_bytes: int,
        local_bytes: int = DEFAULT_LOCAL_BYTES,
        on_lookup: Callable[..., None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"the cache TTL must be positive, got {ttl!r}")
        if max_entry_bytes < 1:
            raise ValueError(f"the cache entry bound must be positive, got {max_entry_bytes!r}")
        self.cache = cache
        self.ttl_ms = int(ttl * 1000)
        self.max_entry_bytes = max_entry_bytes
        self.local_bytes = local_bytes
        self._local: OrderedDict[str, tuple[pd.DataFrame, int, float]] = OrderedDict()
        self._local_used = 0
        self._on_lookup = on_lookup
        self._on_error = on_error
        self._down = False
        self._lock = threading.Lock()

    def entry_key(self, source: SeriesKey, version: int, parts: Sequence[object]) -> str:
        """The entry of a query over ``source`` (the series read) at ``version``; ``parts`` say what was asked."""
        return self.cache.client.key("mdcache", str(source), f"v{version}", *(str(p) for p in parts))

    def read_through(
        self, source: SeriesKey, parts: Sequence[object], load: Callable[[], pd.DataFrame]
    ) -> tuple[pd.DataFrame, bool]:
        """The cached answer of the query ``parts`` over ``source``, else ``load()`` (then cached); and
        whether it was a hit. Errors of ``load`` propagate; Redis errors only degrade to an uncached read."""
        raw = self.cache.client.raw
        try:
            name = self.entry_key(source, self.cache.version(source), parts)
            local = self._recall(name)
            blob = None if local is not None else raw.get(name)
        except (redis.RedisError, MarketkeeperError) as exc:
            self._failed(exc)
            return load(), False
        self._answered()
        if local is not None:
            self._lookup(hit=True, local=True)
            return local, True
        if blob is not None:
            try:
                frame = decode_frame(cast(bytes, blob))
            except (ValueError, KeyError, TypeError, struct.error) as exc:
                log.warning("cache entry %s is unreadable (%s); reading the store", name, exc)
            else:
                self._lookup(hit=True)
                self._keep(name, frame)
                return frame, True
        self._lookup(hit=False)
        frame = load()
        encoded = encode_frame(frame)
        if len(encoded) > self.max_entry_bytes:
            log.debug("not caching %s: %d bytes exceed the bound of %d", name, len(encoded), self.max_entry_bytes)
            return frame, False
        try:
            raw.set(name, encoded, px=self.ttl_ms)
        except (redis.RedisError, MarketkeeperError) as exc:
            self._failed(exc)
            return frame, False
        self._keep(name, frame)
        return frame, False

    def _recall(self, name: str) -> pd.DataFrame | None:
        """The in-memory frame of entry ``name`` (a shallow copy: under copy-on-write the caller's changes never
        reach the kept frame), or ``None``."""
        with self._lock:
            kept = self._local.get(name)
            if kept is None:
                return None
            frame, size, expires = kept
            if time.monotonic() >= expires:
                del self._local[name]
                self._local_used -= size
                return None
            self._local.move_to_end(name)
        return frame.copy(deep=False)

    def _keep(self, name: str, frame: pd.DataFrame) -> None:
        size = int(frame.memory_usage(index=False).sum())
        if size > self.local_bytes:
            return
        with self._lock:
            if name in self._local:
                return
            self._local[name] = (frame.copy(deep=False), size, time.monotonic() + self.ttl_ms / 1000)
            self._local_used += size
            while self._local_used > self.local_bytes:
                _, (_, dropped, _) = self._local.popitem(last=False)
                self._local_used -= dropped

    def _lookup(self, *, hit: bool, local: bool = False) -> None:
        if self._on_lookup is not None:
            self._on_lookup(hit=hit, local=local)

    def _failed(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error()
        with self._lock:
            first, self._down = not self._down, True
        if first:
            log.warning(
                "the Redis candle cache failed, reading the stores uncached until it answers: %s", first_line(exc)
            )

    def _answered(self) -> None:
        if self._down:
            with self._lock:
                self._down = False
            log.info("the Redis candle cache answers again")
