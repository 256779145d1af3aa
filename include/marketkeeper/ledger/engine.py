"""Engines and sessions for the ledger, tuned per backend: PostgreSQL in production, embedded SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from marketkeeper.errors import ConfigurationError
from marketkeeper.settings import get_settings, normalize_database_url


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory and ``file:`` URI databases."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # SQLite ignores foreign keys unless asked on every connection; without this ON DELETE does nothing.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets Airflow tasks read while another writes, instead of failing with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def create_ledger_engine(url: str | None = None, **kw: Any) -> Engine:
    """An engine on the ledger: ``url``, else the configured ``DATABASE_URL``, else the embedded SQLite file.

    :param url: a SQLAlchemy URL; ``postgresql://`` and ``postgresql+asyncpg://`` spellings are mapped onto
        psycopg 3. For SQLite the file's folder is created, foreign keys enforced and WAL journaling enabled.
    :param kw: passed to :func:`sqlalchemy.create_engine` (e.g. ``poolclass``, ``echo``).
    :raises ConfigurationError: the URL cannot be parsed.
    """
    raw = url if url is not None else get_settings().ledger_url
    try:
        parsed = make_url(normalize_database_url(raw))
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"ledger URL is not a valid SQLAlchemy URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, **kw)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    if backend == "postgresql":
        # Airflow workers hold pooled connections across long idle gaps; check them before use.
        kw.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kw)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit (tasks often return them).

    :param engine: an engine from :func:`create_ledger_engine`.
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine_or_factory: Engine | sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends normally, rolls back and re-raises when it raises.

    :param engine_or_factory: an engine (a factory is made for it) or a factory from :func:`session_factory`.
    """
    factory = engine_or_factory if isinstance(engine_or_factory, sessionmaker) else session_factory(engine_or_factory)
    with factory() as session, session.begin():
        yield session
