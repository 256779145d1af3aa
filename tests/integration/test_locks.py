"""Series locks on the real Redis and PostgreSQL (and the SQLite ledger's file lock): exclusion, holder, expiry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.locks import (
    FileSeriesLock,
    PostgresSeriesLock,
    RedisSeriesLock,
    SeriesLockedError,
    SeriesLockLostError,
    series_lock,
)
from marketkeeper.redis_client import RedisClient

pytestmark = pytest.mark.integration

KEY = SeriesKey.of("locktest", "BTC/USDT", "1m")


def hold_in_child(code: str) -> subprocess.Popen[str]:
    """Run ``code`` (which takes a lock and prints 'locked') in a child process that then sleeps."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code) + "\nprint('locked', flush=True)\nimport time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


def test_redis_lock_excludes_names_the_holder_and_releases(redis_client: RedisClient) -> None:
    refused = pytest.raises(SeriesLockedError, match=r"series locktest:BTC/USDT:1m is locked by worker-a \(redis")
    with RedisSeriesLock(redis_client, KEY, holder="worker-a"), refused:
        RedisSeriesLock(redis_client, KEY, holder="worker-b").acquire()
    with RedisSeriesLock(redis_client, KEY, holder="worker-b") as lock:
        assert lock.current_holder() == "worker-b"
    assert redis_client.raw.get(redis_client.key("lock", "series", str(KEY))) is None


def test_redis_lock_is_renewed_while_held(redis_client: RedisClient) -> None:
    with RedisSeriesLock(redis_client, KEY, ttl=0.3, holder="long-job") as lock:
        time.sleep(1.0)
        lock.ensure_held()
        with pytest.raises(SeriesLockedError):
            RedisSeriesLock(redis_client, KEY).acquire()


def test_a_dead_redis_holder_expires_and_cannot_release_the_new_holders_lock(redis_client: RedisClient) -> None:
    dead = RedisSeriesLock(redis_client, KEY, ttl=0.2, holder="crashed")
    assert dead._try_acquire()  # taken without renewal, as by a process that then died
    dead.held = True
    with RedisSeriesLock(redis_client, KEY, wait=2.0, holder="successor") as successor:
        dead.held = True
        dead.release()  # token-checked: the successor's lock survives
        assert successor.current_holder() == "successor"
        with pytest.raises(SeriesLockLostError):
            dead.ensure_held()


def test_postgres_advisory_lock_excludes_and_names_the_holder(pg_engine: sa.Engine) -> None:
    assert isinstance(series_lock(KEY, ledger=pg_engine), PostgresSeriesLock)
    refused = pytest.raises(SeriesLockedError, match="locked by pg-worker-a")
    with series_lock(KEY, ledger=pg_engine, holder="pg-worker-a"), refused:
        series_lock(KEY, ledger=pg_engine, holder="pg-worker-b").acquire()
    with series_lock(KEY, ledger=pg_engine, holder="pg-worker-b"):
        pass


def test_a_dead_postgres_holder_frees_the_lock(pg_url: str, pg_engine: sa.Engine) -> None:
    child = hold_in_child(
        f"""
        from marketkeeper.ledger import create_ledger_engine
        from marketkeeper.locks import series_lock
        lock = series_lock({str(KEY)!r}, ledger=create_ledger_engine({pg_url!r}), holder="doomed")
        lock.acquire()
        """
    )
    try:
        with pytest.raises(SeriesLockedError, match="doomed"):
            series_lock(KEY, ledger=pg_engine).acquire()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with series_lock(KEY, ledger=pg_engine, wait=10.0, holder="heir") as lock:
            assert lock.current_holder() == "heir"
    finally:
        child.kill()
        child.wait()


def test_sqlite_ledger_file_lock_dies_with_its_process(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    lock = series_lock(KEY, ledger=engine)
    assert isinstance(lock, FileSeriesLock) and lock.directory == tmp_path / "locks"
    child = hold_in_child(
        f"""
        from marketkeeper.locks import FileSeriesLock
        FileSeriesLock({str(tmp_path / "locks")!r}, {str(KEY)!r}, holder="doomed-file").acquire()
        """
    )
    try:
        with pytest.raises(SeriesLockedError, match="locked by doomed-file"):
            series_lock(KEY, ledger=engine).acquire()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with series_lock(KEY, ledger=engine, wait=5.0, holder="heir"):
            pass
    finally:
        child.kill()
        child.wait()
        engine.dispose()
