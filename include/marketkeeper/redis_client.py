"""A namespaced Redis client: every key marketkeeper writes lives under one prefix in a shared Redis.

Redis holds latest prices, watermarks, locks and caches; none of it is the system of record, but a failure to
reach Redis is still raised as :class:`~marketkeeper.errors.StoreUnavailableError` so callers decide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from marketkeeper.closing import Closing
from marketkeeper.errors import StoreUnavailableError


@dataclass(frozen=True)
class ServerInfo:
    """What a ping learned about a server."""

    version: str
    latency_ms: float


class RedisClient(Closing):
    """redis-py with a key prefix and typed errors.

    :param url: a ``redis://`` or ``rediss://`` URL; the DB index is the path (``redis://host:6379/2``).
    :param prefix: prepended to every key this client names.
    :param socket_timeout: seconds before a read or connect gives up.
    """

    def __init__(self, url: str, *, prefix: str = "marketkeeper:", socket_timeout: float = 5.0) -> None:
        raw = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, decode_responses=False
        )
        self._init(raw, prefix)

    @classmethod
    def from_redis(cls, raw: redis.Redis, *, prefix: str = "marketkeeper:") -> RedisClient:
        """Wrap an existing ``redis.Redis`` (for example one a hook or a test built)."""
        client = cls.__new__(cls)
        client._init(raw, prefix)
        return client

    def _init(self, raw: redis.Redis, prefix: str) -> None:
        self.raw = raw
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        """The full key for ``parts`` joined with ``:`` under this client's prefix."""
        return self.prefix + ":".join(parts)

    def ping(self) -> ServerInfo:
        """Round-trip a PING and read the server version.

        :raises StoreUnavailableError: Redis did not answer.
        """
        started = time.perf_counter()
        try:
            self.raw.ping()
            latency_ms = (time.perf_counter() - started) * 1000
            info = self.raw.info("server")
        except redis.RedisError as exc:
            raise StoreUnavailableError("Redis", str(exc) or type(exc).__name__) from exc
        return ServerInfo(version=str(info.get("redis_version", "unknown")), latency_ms=latency_ms)

    def close(self) -> None:
        self.raw.close()

    @property
    def target(self) -> str:
        """Where the client points, ``redis://host:port/db`` (never the password), for messages."""
        kwargs = self.raw.connection_pool.connection_kwargs
        if kwargs.get("path"):
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        return f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"

    def __repr__(self) -> str:
        # The connection kwargs may hold a password: show only where the client points.
        kwargs = self.raw.connection_pool.connection_kwargs
        return (
            f"RedisClient(host={kwargs.get('host')!r}, port={kwargs.get('port')!r}, "
            f"db={kwargs.get('db')!r}, prefix={self.prefix!r})"
        )
