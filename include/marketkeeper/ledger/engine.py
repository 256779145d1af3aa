"""Engines and sessions for the ledger, tuned per backend: PostgreSQL in production, embedded SQLite.

Every PostgreSQL connection gets bounded timeouts (connect, statement, lock, idle in transaction) and TCP
keepalives, so a half-dead server fails a task instead of hanging it; the values come from
:class:`~marketkeeper.settings.Settings` and a URL's own query parameters override them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from marketkeeper.errors import ConfigurationError
from marketkeeper.settings import Settings, get_settings, normalize_database_url, redact_url

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "SUPPORTED_SCHEMES",
    "create_ledger_engine",
    "ledger_target",
    "session_factory",
    "session_scope",
    "sqlite_database_file",
]

#: What ``DATABASE_URL`` may start with (``postgres://``, ``postgresql+asyncpg://`` ... map onto the first).
SUPPORTED_SCHEMES = ("postgresql://", "sqlite:///")

#: PostgreSQL settings sent at connection start (``options=-c name=value``); a URL query parameter of the same
#: name, in PostgreSQL's syntax (``5000`` ms, ``5s``, ``1min``), overrides the configured seconds.
_SERVER_TIMEOUTS = {
    "statement_timeout": "marketkeeper_db_statement_timeout",
    "lock_timeout": "marketkeeper_db_lock_timeout",
    "idle_in_transaction_session_timeout": "marketkeeper_db_idle_in_transaction_timeout",
}
_DURATION = re.compile(r"^\d+(\.\d+)?(us|ms|s|min|h|d)?$")


def sqlite_database_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (``file:`` URIs included), or ``None`` for an in-memory database."""
    database = url.database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        parts = urlsplit(database)
        path = unquote(parts.path)
        modes = [*parse_qs(parts.query).get("mode", []), str(url.query.get("mode", ""))]
        if not path or path == ":memory:" or "memory" in modes:
            return None
        return Path(path).expanduser()
    return Path(database).expanduser()


def ledger_target(url: str | URL) -> str:
    """The ledger's URL without its password, for messages."""
    return redact_url(make_url(url).render_as_string(hide_password=True) if isinstance(url, URL) else url)


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # SQLite ignores foreign keys unless asked on every connection; without this ON DELETE does nothing.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets Airflow tasks read while another writes, instead of failing with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _milliseconds(seconds: float) -> int:
    return math.ceil(seconds * 1000)


def _postgres_connect_args(url: URL, settings: Settings) -> tuple[URL, dict[str, Any]]:
    """The URL without marketkeeper's own query parameters, and the connect arguments to add to it."""
    query = dict(url.query)
    args: dict[str, Any] = {}
    client = {
        # libpq takes whole seconds; 0 would mean "wait forever", so a disabled timeout is simply not sent.
        "connect_timeout": math.ceil(settings.marketkeeper_db_connect_timeout) or None,
        "keepalives": 1,
        "keepalives_idle": settings.marketkeeper_db_keepalives_idle,
        "keepalives_interval": settings.marketkeeper_db_keepalives_interval,
        "keepalives_count": settings.marketkeeper_db_keepalives_count,
        "tcp_user_timeout": _milliseconds(settings.marketkeeper_db_tcp_user_timeout) or None,
    }
    args.update({name: value for name, value in client.items() if value is not None and name not in query})

    options = query.pop("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    words = [options] if options else []
    for name, field in _SERVER_TIMEOUTS.items():
        given = query.pop(name, None)
        if f"{name}=" in options:
            continue  # the URL's own options already set it
        if given is not None:
            value = str(given[-1] if isinstance(given, tuple) else given).replace(" ", "")
            if not _DURATION.match(value):
                raise ConfigurationError(
                    f"ledger URL parameter {name}={value!r} is not a PostgreSQL duration (e.g. 5000, 5s, 1min)"
                )
        else:
            value = str(_milliseconds(getattr(settings, field)))
        words.append(f"-c {name}={value}")
    if words:
        args["options"] = " ".join(words)
    return url.set(query=query), args


def create_ledger_engine(url: str | None = None, *, settings: Settings | None = None, **kw: Any) -> Engine:
    """An engine on the ledger: ``url``, else the configured ``DATABASE_URL``, else the embedded SQLite file.

    PostgreSQL connections get ``connect_timeout``, ``statement_timeout``, ``lock_timeout``,
    ``idle_in_transaction_session_timeout``, TCP keepalives and ``tcp_user_timeout`` from ``settings``; a query
    parameter of the URL with a libpq name (``?connect_timeout=3&keepalives_idle=5``) or one of the three
    server timeouts (``?statement_timeout=0`` disables it, ``?lock_timeout=5s``) overrides the setting. SQLite
    gets a busy timeout (``?timeout=`` in the URL overrides it), foreign keys and WAL journaling.

    :param url: a SQLAlchemy URL; ``postgresql://`` and ``postgresql+asyncpg://`` spellings are mapped onto
        psycopg 3. For SQLite the file's folder is created.
    :param settings: where the timeouts come from (default: the process settings).
    :param kw: passed to :func:`sqlalchemy.create_engine` (e.g. ``poolclass``, ``echo``); its ``connect_args``
        win over everything above.
    :raises ConfigurationError: the URL cannot be parsed, names an unsupported database, or a driver is missing.
    """
    settings = settings or get_settings()
    raw = url if url is not None else settings.ledger_url
    try:
        parsed = make_url(normalize_database_url(raw))
    except (sa.exc.ArgumentError, ValueError) as exc:
        # The parser's message repeats the URL, password and all: name the expected shape instead.
        raise ConfigurationError(
            "the ledger URL (DATABASE_URL) is not a valid URL: expected postgresql://user:password@host:5432/db "
            "or sqlite:///path/to/ledger.sqlite"
        ) from exc
    backend = parsed.get_backend_name()
    extra: dict[str, Any] = {}
    if backend == "sqlite":
        path = sqlite_database_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if "timeout" not in parsed.query:
            extra["timeout"] = settings.marketkeeper_db_busy_timeout
    elif backend == "postgresql":
        parsed, extra = _postgres_connect_args(parsed, settings)
        # Airflow workers hold pooled connections across long idle gaps; check them before use.
        kw.setdefault("pool_pre_ping", True)
    else:
        raise ConfigurationError(
            f"the ledger URL (DATABASE_URL) uses the unsupported scheme {parsed.drivername + '://'!r}: "
            f"use {' or '.join(SUPPORTED_SCHEMES)}"
        )
    kw["connect_args"] = {**extra, **kw.get("connect_args", {})}
    try:
        engine = sa.create_engine(parsed, **kw)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigurationError(
            f"the ledger URL (DATABASE_URL) needs the driver {parsed.drivername!r}, which is not installed: "
            f"use {' or '.join(SUPPORTED_SCHEMES)}"
        ) from exc
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit (tasks often return them).

    :param engine: an engine from :func:`create_ledger_engine`.
    """
    from sqlalchemy.orm import sessionmaker  # the ORM loads when a session is first wanted, not with the engine

    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine_or_factory: Engine | sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends normally, rolls back and re-raises when it raises.

    :param engine_or_factory: an engine (a factory is made for it) or a factory from :func:`session_factory`.
    """
    from sqlalchemy.orm import sessionmaker

    factory = engine_or_factory if isinstance(engine_or_factory, sessionmaker) else session_factory(engine_or_factory)
    with factory() as session, session.begin():
        yield session
