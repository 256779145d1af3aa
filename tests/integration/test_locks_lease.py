"""Series locks as leases against the real Redis and PostgreSQL: a lock whose renewals fail or hang is lost
within its ttl, and writers configured differently still contend on the one ledger lock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.locks import PostgresSeriesLock, RedisSeriesLock, SeriesLockedError, SeriesLockLostError, series_lock
from marketkeeper.redis_client import RedisClient

pytestmark = pytest.mark.integration

KEY = SeriesKey.of("leasetest", "ETH/USDT", "1h")


def test_a_redis_lock_whose_renewals_fail_is_lost_after_its_ttl(
    redis_client: RedisClient, redis_url: str, redis_prefix: str
) -> None:
    lock = RedisSeriesLock(redis_client, KEY, ttl=0.6, holder="first")
    lock.acquire()
    # From now on every renewal (and the release) goes to a server that is not there.
    lock.client = RedisClient("redis://127.0.0.1:1/15", prefix=redis_prefix, socket_timeout=0.2)
    lock.ensure_held()  # still within its ttl
    time.sleep(0.8)
    with pytest.raises(SeriesLockLostError, match="leasetest:ETH/USDT:1h"):
        lock.ensure_held()
    # The key expired in Redis: a second writer takes the lock, and the first one knows it must not write.
    with RedisSeriesLock(redis_client, KEY, holder="second") as second:
        assert second.current_holder() == "second"
        with pytest.raises(SeriesLockLostError):
            lock.ensure_held()
        lock.release()  # fails to reach Redis, but the lock was lost already: no error, and no harm
        second.ensure_held()
    lock.client.close()


def test_leaving_the_block_of_a_lost_lock_fails_even_without_ensure_held(redis_client: RedisClient) -> None:
    failing = RedisClient("redis://127.0.0.1:1/15", prefix="mktest:", socket_timeout=0.2)
    with (
        pytest.raises(SeriesLockLostError, match="was lost while held"),
        RedisSeriesLock(redis_client, KEY, ttl=0.5) as lock,
    ):
        assert isinstance(lock, RedisSeriesLock)
        lock.client = failing
        time.sleep(0.7)
    failing.close()


def test_a_postgres_lock_whose_connection_is_killed_is_lost(pg_engine: sa.Engine) -> None:
    with (
        pytest.raises(SeriesLockLostError),
        series_lock(KEY, ledger=pg_engine, ttl=0.6, holder="victim") as lock,
    ):
        assert isinstance(lock, PostgresSeriesLock)
        with pg_engine.connect() as admin:
            admin.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": "marketkeeper lock victim"},
            )
        deadline = time.monotonic() + 5
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.lost  # the renewer noticed the dead connection
        lock.ensure_held()
    with series_lock(KEY, ledger=pg_engine, holder="next"):
        pass


class FreezableProxy:
    """A TCP proxy to PostgreSQL that can stop forwarding without closing: a half-dead connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                if self.frozen.is_set():
                    time.sleep(0.05)
                    continue
                source.settimeout(0.05)
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                sink.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_a_postgres_lock_on_a_half_dead_connection_is_lost_within_its_ttl(pg_url: str, pg_engine: sa.Engine) -> None:
    url = make_url(pg_url)
    proxy = FreezableProxy(url.host or "127.0.0.1", url.port or 5432)
    engine = create_ledger_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        lock = series_lock(KEY, ledger=engine, ttl=1.2, holder="half-dead")
        lock.acquire()
        proxy.frozen.set()  # the server and the client both still think the connection is open
        time.sleep(1.5)
        with pytest.raises(SeriesLockLostError):
            lock.ensure_held()
        started = time.monotonic()
        lock.release()  # must not hang on the stuck renewal
        assert time.monotonic() - started < 5
        # PostgreSQL still holds the session (the proxy keeps it open), so the lock is not free yet ...
        with pytest.raises(SeriesLockedError, match="half-dead"):
            series_lock(KEY, ledger=pg_engine).acquire()
        # ... until the connection really dies.
        proxy.close()
        with series_lock(KEY, ledger=pg_engine, wait=10.0, holder="heir") as heir:
            assert heir.current_holder() == "heir"
    finally:
        proxy.close()
        engine.dispose()


WRITER = textwrap.dedent(
    """
    import os, sys, time
    from marketkeeper.locks import series_lock
    from marketkeeper.store_set import StoreConfig, StoreSet

    journal, name, go = sys.argv[1], sys.argv[2], sys.argv[3]
    # Opened as the services open stores, from this writer's own environment: only one of them has REDIS_URL.
    stores = StoreSet.open(StoreConfig.from_settings())
    while not os.path.exists(go):
        time.sleep(0.01)
    for _ in range(15):
        lock = series_lock("leasetest:ETH/USDT:1h", ledger=stores.ledger, wait=60, holder=name)
        with lock:
            with open(journal, "a") as f:
                f.write(f"start {name}\\n")
            time.sleep(0.01)
            lock.ensure_held()
            with open(journal, "a") as f:
                f.write(f"end {name}\\n")
    print("done", name, flush=True)
    """
)


def test_writers_with_and_without_redis_never_interleave_on_one_ledger(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    journal, go = tmp_path / "journal.txt", tmp_path / "go"
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    configs = {
        "cli-without-redis": {**base, "DATABASE_URL": pg_url},
        "dag-with-redis": {**base, "DATABASE_URL": pg_url, "REDIS_URL": redis_url},
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(journal), name, str(go)],
            env=env,
            cwd=tmp_path,  # no stray .env
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in configs.items()
    ]
    go.touch()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.startswith("done")
    lines = journal.read_text().splitlines()
    assert len(lines) == 2 * 15 * len(configs)
    for start, end in zip(lines[::2], lines[1::2], strict=True):
        kind, name = start.split()
        assert (kind, end) == ("start", f"end {name}"), lines  # nobody started while another held the lock
    assert {line.split()[1] for line in lines} == set(configs)
