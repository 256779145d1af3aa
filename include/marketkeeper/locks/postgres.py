"""A series lock in the PostgreSQL ledger: a session advisory lock on a connection held while locked."""

from __future__ import annotations

import hashlib
import logging
import threading

import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import StoreUnavailableError
from marketkeeper.locks.base import DEFAULT_TTL, SeriesLock

__all__ = ["PostgresSeriesLock", "advisory_key"]

log = logging.getLogger("marketkeeper.locks")


def advisory_key(series: str) -> int:
    """The signed 64-bit advisory-lock key of a series (a SHA-256 prefix; collisions are astronomically rare)."""
    return int.from_bytes(hashlib.sha256(f"marketkeeper-series\x1f{series}".encode()).digest()[:8], "big", signed=True)


class PostgresSeriesLock(SeriesLock):
    """A PostgreSQL session advisory lock (``pg_try_advisory_lock``) on a connection held while locked.

    Advisory locks live in one database, so two deployments sharing a server never contend. The lock dies with
    its connection, so a crashed holder frees it as soon as PostgreSQL notices the connection is gone (TCP
    keepalives bound that, see :func:`~marketkeeper.ledger.engine.create_ledger_engine`). The renewer checks
    the connection every ``ttl / 3``: a failed check marks the lock lost at once, a check that hangs on a
    half-dead connection is caught by :meth:`ensure_held` ``ttl`` after the last good one. The holder is
    published as the connection's ``application_name``.
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
        # The renewer and release() share the connection: whoever finds the other mid-statement leaves it.
        self._guard = threading.Lock()
        self._busy: sa.Connection | None = None

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.DBAPIError as exc:
            raise StoreUnavailableError("PostgreSQL", f"lock of {self.series}: {exc.orig or exc}") from exc

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
        with self._guard:
            conn, self._conn = self._conn, None
            in_use = conn is not None and self._busy is conn
        if conn is None or in_use:
            return  # a renewal is stuck on this connection: the renewer closes it when the statement returns
        if self.lost:
            # The session may be dead; drop the connection (and with it the lock) instead of talking to it.
            conn.invalidate()
            conn.close()
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_id})
            conn.execute(sa.text("SELECT set_config('application_name', '', false)"))
        finally:
            conn.close()

    def renew(self) -> bool:
        # Nothing expires server-side; check that the connection (and so the lock) is still alive.
        with self._guard:
            conn = self._conn
            if conn is None:
                return False
            self._busy = conn
        alive = False
        try:
            conn.execute(sa.text("SELECT 1"))
            alive = True
        except sa.exc.DBAPIError as exc:
            log.warning("the connection holding the lock of %s failed: %s", self.series, exc.orig or exc)
        finally:
            with self._guard:
                self._busy = None
                orphaned = self._conn is not conn
            if orphaned or not alive:
                # Released while this statement ran, or dead: nobody else will close it.
                with self._guard:
                    if self._conn is conn:
                        self._conn = None
                conn.invalidate()
                conn.close()
        return alive

    def current_holder(self) -> str | None:
        unsigned = self.lock_id & 0xFFFFFFFFFFFFFFFF
        query = sa.text(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        with self.engine.connect() as conn:
            row = conn.execute(query, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).first()
        if row is None:
            return None
        name = str(row[0] or "")
        return name.removeprefix("marketkeeper lock ") or f"PostgreSQL backend pid {row[1]}"
