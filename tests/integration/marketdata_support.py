"""What the market-data tests share: a Redis key prefix of each test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture(name="prefix")
def own_redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test alone (outside ``mktest:``, which other test processes clear when they
    finish), deleted afterwards."""
    name = f"mktest14:{uuid.uuid4().hex[:8]}:"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
