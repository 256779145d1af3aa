"""One writer per candle series: a lock a backfill (or an ingestion) holds while it writes a series.

Redis when configured (``SET key token NX PX ttl``, renewed while held, released only by its own token);
otherwise the ledger: a PostgreSQL session advisory lock on a held connection, or, for the embedded SQLite
ledger, an ``flock`` on a file beside it. A dead holder never blocks for good: its Redis key expires, its
PostgreSQL connection closes, its file lock dies with the process.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import redis
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError, StoreUnavailableError
from marketkeeper.redis_client import RedisClient

__all__ = [
    "DEFAULT_TTL",
    "FileSeriesLock",
    "PostgresSeriesLock",
    "RedisSeriesLock",
    "SeriesLock",
    "SeriesLockLostError",
    "SeriesLockedError",
    "default_holder",
    "series_lock",
]

log = logging.getLogger(__name__)

#: Seconds a Redis lock outlives its holder's last renewal.
DEFAULT_TTL: Final = 60.0

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class SeriesLockedError(MarketkeeperError):
    """Another process holds the series' lock.

    :ivar series: the series, ``exchange:symbol:timeframe``.
    :ivar holder: who holds it (host:pid:thread, or an application name), when the backend can tell.
    """

    def __init__(self, series: str, holder: str | None, backend: str, waited: float) -> None:
        who = holder or "an unknown holder"
        waited_text = f" after waiting {waited:.1f}s" if waited > 0 else ""
        super().__init__(f"series {series} is locked by {who} ({backend} lock){waited_text}")
        self.series = series
        self.holder = holder
        self.backend = backend


class SeriesLockLostError(MarketkeeperError):
    """A held lock was lost (it expired and someone else may have it); stop writing the series."""


def default_holder() -> str:
    """``host:pid:thread``, which names the process (and thread) holding a lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def _series_name(key: SeriesKey | str) -> str:
    return str(key)


class SeriesLock(abc.ABC):
    """A non-reentrant lock on one series; use it as a context manager.

    :param key: the series.
    :param ttl: seconds before an unrenewed lock expires (backends whose locks die with the holder ignore it).
    :param wait: seconds to keep trying when the lock is held elsewhere before raising.
    :param holder: the name others see while this lock is held (default: :func:`default_holder`).
    """

    backend: str = "abstract"

    def __init__(
        self, key: SeriesKey | str, *, ttl: float = DEFAULT_TTL, wait: float = 0.0, holder: str | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.series = _series_name(key)
        self.ttl = ttl
        self.wait = wait
        self.holder = holder or default_holder()
        self.held = False
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @abc.abstractmethod
    def _try_acquire(self) -> bool: ...

    @abc.abstractmethod
    def _release(self) -> None: ...

    @abc.abstractmethod
    def current_holder(self) -> str | None:
        """Who holds the lock now, when the backend can tell (``None``: free or unknown)."""

    def renew(self) -> bool:
        """Extend a held lock; ``False`` when it was lost. Backends whose locks cannot expire return ``True``."""
        return self.held

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds.

        :raises SeriesLockedError: naming the series and its holder.
        """
        if self.held:
            raise RuntimeError(f"lock of {self.series} is already held by this object")
        started = time.monotonic()
        pause = 0.05
        while not self._try_acquire():
            waited = time.monotonic() - started
            if waited >= self.wait:
                raise SeriesLockedError(self.series, self.current_holder(), self.backend, waited)
            time.sleep(min(pause, max(self.wait - waited, 0.0)))
            pause = min(pause * 2, 1.0)
        self.held = True
        self.lost = False
        self._start_renewal()
        log.debug("locked %s (%s) as %s", self.series, self.backend, self.holder)

    def release(self) -> None:
        """Give the lock up; a no-op when it is not held."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if self.held:
            self.held = False
            self._release()

    def ensure_held(self) -> None:
        """Raise :class:`SeriesLockLostError` if the lock was lost since it was taken (call before a write)."""
        if not self.held or self.lost:
            raise SeriesLockLostError(f"lock of series {self.series} ({self.backend}) is no longer held")

    def _start_renewal(self) -> None:
        self._stop = threading.Event()
        interval = self.ttl / 3

        def renew_loop() -> None:
            while not self._stop.wait(interval):
                try:
                    ok = self.renew()
                except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
                    # A transient error: keep trying until the ttl really runs out.
                    log.warning("renewing the lock of %s failed: %s", self.series, exc)
                    continue
                if not ok:
                    self.lost = True
                    log.error("lock of %s was lost (expired or taken over)", self.series)
                    return

        self._renewer = threading.Thread(target=renew_loop, name=f"lock-renew-{self.series}", daemon=True)
        self._renewer.start()

    def __enter__(self) -> SeriesLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class RedisSeriesLock(SeriesLock):
    """A lock in Redis: ``SET key token NX PX ttl``, renewed every ``ttl / 3``, released by a token-checked script.

    :param client: the namespaced Redis client; the key is ``{prefix}lock:series:{exchange:symbol:tf}``.
    """

    backend = "redis"

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


def advisory_key(series: str) -> int:
    """The signed 64-bit advisory-lock key of a series (a SHA-256 prefix; collisions are astronomically rare)."""
    return int.from_bytes(hashlib.sha256(f"marketkeeper-series\x1f{series}".encode()).digest()[:8], "big", signed=True)


class PostgresSeriesLock(SeriesLock):
    """A PostgreSQL session advisory lock (``pg_try_advisory_lock``) on a connection held while locked.

    The lock dies with the connection, so a crashed holder frees it as soon as PostgreSQL notices the
    connection is gone. The holder is published as the connection's ``application_name``.
    """

    backend = "postgresql"

    def __init__(
        self,
        engine: sa.Engine,
        key: SeriesKey | str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        holder: str | None = None,
    ) -> None:
        super().__init__(key, ttl=ttl, wait=wait, holder=holder)
        self.engine = engine
        self.lock_id = advisory_key(self.series)
        self._conn: sa.Connection | None = None

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.OperationalError as exc:
            raise StoreUnavailableError("PostgreSQL", f"lock of {self.series}: {exc}") from exc

    def _try_acquire(self) -> bool:
        conn = self._connect()
        try:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.lock_id}).scalar_one()
            if got:
                name = f"marketkeeper lock {self.holder}"[:63]
                conn.execute(sa.text("SELECT set_config('application_name', :n, false)"), {"n": name})
                self._conn = conn
                return True
        except BaseException:
            conn.close()
            raise
        conn.close()
        return False

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_id})
            conn.execute(sa.text("SELECT set_config('application_name', '', false)"))
        finally:
            conn.close()

    def renew(self) -> bool:
        # Nothing expires; check that the connection (and so the lock) is still alive.
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError:
            return False
        return True

    def current_holder(self) -> str | None:
        unsigned = self.lock_id & 0xFFFFFFFFFFFFFFFF
        query = sa.text(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
        )
        with self.engine.connect() as conn:
            row = conn.execute(query, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).first()
        if row is None:
            return None
        name = str(row[0] or "")
        return name.removeprefix("marketkeeper lock ") or f"PostgreSQL backend pid {row[1]}"


class FileSeriesLock(SeriesLock):
    """An exclusive ``flock`` on a file per series in ``directory``: the embedded (SQLite) ledger's lock.

    Only processes on this machine see it, which is where an embedded ledger's writers run.
    """

    backend = "file"

    def __init__(
        self,
        directory: Path | str,
        key: SeriesKey | str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        holder: str | None = None,
    ) -> None:
        super().__init__(key, ttl=ttl, wait=wait, holder=holder)
        self.directory = Path(directory)
        digest = hashlib.sha256(self.series.encode()).hexdigest()[:32]
        self.path = self.directory / f"series-{digest}.lock"
        self._file: IO[str] | None = None

    def _try_acquire(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{self.holder}\n{self.series}\n")
        handle.flush()
        self._file = handle
        return True

    def _release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):  # the lock goes with the descriptor even if truncating fails
                handle.truncate(0)
            handle.close()

    def current_holder(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return text.splitlines()[0] if text.strip() else None


def ledger_lock_directory(engine: sa.Engine) -> Path:
    """Where file locks of a SQLite ledger live: ``locks/`` beside its file, or the temp folder in memory."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).expanduser().resolve().parent / "locks"
    return Path(tempfile.gettempdir()) / "marketkeeper-locks"


def series_lock(
    key: SeriesKey | str,
    *,
    redis_client: RedisClient | None = None,
    ledger: sa.Engine | None = None,
    ttl: float = DEFAULT_TTL,
    wait: float = 0.0,
    holder: str | None = None,
) -> SeriesLock:
    """The lock of ``key`` on the best backend available: Redis, else the ledger (PostgreSQL or SQLite file).

    :param redis_client: the configured Redis, if any.
    :param ledger: the ledger engine, used when Redis is not configured.
    :param ttl: seconds an unrenewed Redis lock outlives its holder.
    :param wait: seconds to wait for a lock held elsewhere before :class:`SeriesLockedError`.
    :raises ValueError: neither Redis nor a ledger was given.
    """
    if redis_client is not None:
        return RedisSeriesLock(redis_client, key, ttl=ttl, wait=wait, holder=holder)
    if ledger is None:
        raise ValueError("series_lock needs a Redis client or a ledger engine")
    if ledger.dialect.name == "postgresql":
        return PostgresSeriesLock(ledger, key, ttl=ttl, wait=wait, holder=holder)
    return FileSeriesLock(ledger_lock_directory(ledger), key, ttl=ttl, wait=wait, holder=holder)
