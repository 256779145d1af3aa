"""The namespaced Redis client against the real server."""

from __future__ import annotations

import pytest

from marketkeeper.errors import StoreUnavailableError
from marketkeeper.redis_client import RedisClient

pytestmark = pytest.mark.integration


def test_ping_reports_version_and_latency(redis_url: str) -> None:
    with RedisClient(redis_url) as client:
        info = client.ping()
    assert info.version.count(".") >= 1
    assert info.latency_ms >= 0


def test_keys_live_under_the_prefix(redis_url: str, redis_prefix: str) -> None:
    with RedisClient(redis_url, prefix=redis_prefix) as client:
        key = client.key("price", "binance", "BTC/USDT")
        client.raw.set(key, b"50000.5")
        assert key == f"{redis_prefix}price:binance:BTC/USDT"
        assert client.raw.get(f"{redis_prefix}price:binance:BTC/USDT") == b"50000.5"


def test_unreachable_server_raises_store_unavailable() -> None:
    client = RedisClient("redis://127.0.0.1:1/0", socket_timeout=0.5)
    with pytest.raises(StoreUnavailableError, match="Redis is unreachable"):
        client.ping()


def test_repr_never_shows_the_password() -> None:
    client = RedisClient("redis://:hunter2@127.0.0.1:6379/3", prefix="x:")
    assert "hunter2" not in repr(client)
    assert "db=3" in repr(client)
