"""A series lock in Redis: ``SET key token NX PX ttl``, renewed while held, released only by its own token.

Not what :func:`marketkeeper.locks.series_lock` picks (the ledger is the one store every writer of a
deployment shares); kept for callers that coordinate through Redis alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import ClassVar

import redis

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import StoreUnavailableError
from marketkeeper.locks.base import DEFAULT_TTL, SeriesLock
from marketkeeper.redis_client import RedisClient

__all__ = ["RedisSeriesLock"]

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class RedisSeriesLock(SeriesLock):
    """A lock in Redis: ``SET key token NX PX ttl``, renewed every ``ttl / 3``, released by a token-checked script.

    The key expires ``ttl`` after the server handled the last renewal; this side counts from before the renewal
    was sent, so it gives the lock up no later than Redis does (see :meth:`SeriesLock.ensure_held`).

    :param client: the namespaced Redis client; the key is ``{prefix}lock:series:{exchange:symbol:tf}``.
    """

    backend = "redis"
    transient_errors: ClassVar[tuple[type[Exception], ...]] = (redis.RedisError,)

    def __init__(
        self,
        client: RedisClient,
        key: SeriesKey | str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        holder: str | None = None,
    ) -> None:
        super().__init__(key, ttl=ttl, wait=wait, holder=holder)
        self.client = client
        self.key = client.key("lock", "series", self.series)
        # The holder travels inside the token so that a refused caller can say who has the lock.
        self.token = f"{self.holder}|{uuid.uuid4().hex}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except redis.RedisError as exc:
            raise StoreUnavailableError("Redis", f"{what} of lock {self.key}: {exc}") from exc

    def _try_acquire(self) -> bool:
        return bool(self._call("acquire", lambda: self.client.raw.set(self.key, self.token, nx=True, px=self._ttl_ms)))

    def _release(self) -> None:
        self._call("release", lambda: self.client.raw.eval(_RELEASE, 1, self.key, self.token))

    def renew(self) -> bool:
        if not self.held:
            return False
        return bool(self.client.raw.eval(_RENEW, 1, self.key, self.token, self._ttl_ms))

    def current_holder(self) -> str | None:
        value = self._call("read", lambda: self.client.raw.get(self.key))
        if not isinstance(value, bytes | str):
            return None
        text = value.decode() if isinstance(value, bytes) else value
        return text.rpartition("|")[0] or text
