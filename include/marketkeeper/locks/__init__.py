"""One writer per candle series: a lock a backfill (or an ingestion) holds while it writes a series.

:func:`series_lock` always locks in the ledger, the one store every writer of a deployment shares, so a CLI
without Redis and a DAG task with Redis still exclude each other: a PostgreSQL session advisory lock (per
database, so two deployments on one server never collide), or, for the embedded SQLite ledger, an ``flock`` on
a file beside it. A dead holder never blocks for good: its PostgreSQL connection closes, its file lock dies
with the process. :class:`RedisSeriesLock` remains for callers that coordinate through Redis alone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger.engine import sqlite_database_file
from marketkeeper.locks.base import DEFAULT_TTL, SeriesLock, SeriesLockedError, SeriesLockLostError, default_holder
from marketkeeper.locks.file import FileSeriesLock
from marketkeeper.locks.postgres import PostgresSeriesLock, advisory_key
from marketkeeper.locks.redis import RedisSeriesLock

__all__ = [
    "DEFAULT_TTL",
    "FileSeriesLock",
    "PostgresSeriesLock",
    "RedisSeriesLock",
    "SeriesLock",
    "SeriesLockLostError",
    "SeriesLockedError",
    "advisory_key",
    "default_holder",
    "ledger_lock_directory",
    "series_lock",
]


def ledger_lock_directory(engine: sa.Engine) -> tuple[Path, bool]:
    """Where the file locks of a SQLite ledger live, and whether that folder sits in a shared place.

    A ledger file (``file:`` URIs included) keeps them in ``locks/`` beside it. An in-memory ledger has no file,
    and only its own process can open it, so its locks go to a per-user ``0700`` folder in the temp directory
    (refused unless this user owns it and nobody else may enter it) instead of failing: tests and one-process
    tools use in-memory ledgers, and a folder only this user can write is as safe as one beside a file.
    """
    path = sqlite_database_file(engine.url)
    if path is not None:
        return path.resolve().parent / "locks", False
    return Path(tempfile.gettempdir()) / f"marketkeeper-locks-{os.getuid()}", True


def series_lock(
    key: SeriesKey | str,
    *,
    ledger: sa.Engine,
    ttl: float = DEFAULT_TTL,
    wait: float = 0.0,
    holder: str | None = None,
) -> SeriesLock:
    """The lock of ``key`` in the ledger: a PostgreSQL advisory lock, or a file lock beside a SQLite ledger.

    :param ledger: the ledger engine; every writer of a deployment shares it, so they all contend here.
    :param ttl: seconds the lock stays valid after its last confirmed renewal (renewed every ``ttl / 3``).
    :param wait: seconds to wait for a lock held elsewhere before :class:`SeriesLockedError`.
    :param holder: the name others see while the lock is held (default: ``host:pid:thread``).
    """
    if not isinstance(ledger, sa.Engine):
        raise TypeError(f"series_lock needs the ledger engine, got {type(ledger).__name__}")
    if ledger.dialect.name == "postgresql":
        return PostgresSeriesLock(ledger, key, ttl=ttl, wait=wait, holder=holder)
    if ledger.dialect.name == "sqlite":
        directory, private = ledger_lock_directory(ledger)
        return FileSeriesLock(directory, key, ttl=ttl, wait=wait, holder=holder, private=private)
    raise ValueError(f"series locks need a PostgreSQL or SQLite ledger, got {ledger.dialect.name}")
