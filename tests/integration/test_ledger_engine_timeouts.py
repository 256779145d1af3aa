"""The ledger engine against the real PostgreSQL: bounded timeouts reach every session, and a bad or
unreachable DATABASE_URL is one clear line, never a traceback or a password."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from marketkeeper.errors import ConfigurationError, StoreUnavailableError
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.settings import Settings

pytestmark = pytest.mark.integration

SENTINEL = "S3ntinel-pw"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "MARKETKEEPER_DB_STATEMENT_TIMEOUT", "MARKETKEEPER_DB_CONNECT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def show(engine: sa.Engine, *names: str) -> list[str]:
    with engine.connect() as conn:
        return [str(conn.execute(sa.text(f"SHOW {name}")).scalar_one()) for name in names]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung server."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield listener.getsockname()[1]
    listener.close()


def test_default_timeouts_and_keepalives_reach_the_session(pg_url: str) -> None:
    engine = create_ledger_engine(pg_url, settings=Settings())
    try:
        assert show(engine, "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout") == [
            "5min",
            "30s",
            "10min",
        ]
        with engine.connect() as conn:
            params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert params["connect_timeout"] == "10"
        assert (params["keepalives"], params["keepalives_idle"], params["keepalives_count"]) == ("1", "30", "3")
        assert params["tcp_user_timeout"] == "60000"
    finally:
        engine.dispose()


def test_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    monkeypatch.setenv("MARKETKEEPER_DB_STATEMENT_TIMEOUT", "1.5")
    monkeypatch.setenv("MARKETKEEPER_DB_LOCK_TIMEOUT", "2")
    engine = create_ledger_engine(pg_url, settings=Settings())
    try:
        assert show(engine, "statement_timeout", "lock_timeout") == ["1500ms", "2s"]
    finally:
        engine.dispose()


def test_url_query_parameters_override_the_settings(pg_url: str) -> None:
    url = f"{pg_url}?statement_timeout=7s&lock_timeout=0&keepalives_idle=5"
    engine = create_ledger_engine(url, settings=Settings())
    try:
        assert show(engine, "statement_timeout", "lock_timeout") == ["7s", "0"]
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.info.get_parameters()["keepalives_idle"] == "5"  # type: ignore[union-attr]
    finally:
        engine.dispose()
    with pytest.raises(ConfigurationError, match="not a PostgreSQL duration"):
        create_ledger_engine(f"{pg_url}?statement_timeout=soon", settings=Settings())


def test_a_statement_longer_than_the_timeout_fails_clearly(pg_url: str) -> None:
    engine = create_ledger_engine(pg_url, settings=Settings(marketkeeper_db_statement_timeout=0.5))
    try:
        started = time.monotonic()
        with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            conn.execute(sa.text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3
    finally:
        engine.dispose()


def test_connecting_to_a_server_that_never_answers_gives_up(silent_server: int) -> None:
    engine = create_ledger_engine(
        f"postgresql://u:{SENTINEL}@127.0.0.1:{silent_server}/db", settings=Settings(marketkeeper_db_connect_timeout=1)
    )
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError):
        engine.connect()
    assert time.monotonic() - started < 5
    engine.dispose()


def test_sqlite_gets_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_ledger_engine(
        f"sqlite:///{tmp_path / 'l.sqlite'}", settings=Settings(marketkeeper_db_busy_timeout=7)
    )
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 7000
    engine.dispose()


@pytest.mark.parametrize("url", ["mysql://root:" + SENTINEL + "@db/mk", "oracle://u:" + SENTINEL + "@h/x"])
def test_an_unsupported_scheme_is_one_line_naming_the_supported_ones(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_ledger_engine(url)
    message = str(info.value)
    assert "\n" not in message and SENTINEL not in message
    assert url.split("://")[0] in message
    assert "postgresql://" in message and "sqlite:///" in message


def test_an_unparseable_url_does_not_repeat_the_password() -> None:
    with pytest.raises(ConfigurationError, match="not a valid URL") as info:
        create_ledger_engine(f"postgresql://u:{SENTINEL}@h:notaport/db")
    assert SENTINEL not in str(info.value)


def unreachable_urls(pg_url: str, silent_server: int) -> list[str]:
    wrong_password = make_url(pg_url).set(password=SENTINEL).render_as_string(hide_password=False)
    return [
        f"postgresql://mk:{SENTINEL}@127.0.0.1:1/mk",  # nothing listens
        f"postgresql://mk:{SENTINEL}@127.0.0.1:{silent_server}/mk?connect_timeout=1",  # never answers
        make_url(wrong_password).set(database="no_such_database_here").render_as_string(hide_password=False),
    ]


@pytest.mark.parametrize("command", ["current", "upgrade"])
def test_migrate_reports_an_unreachable_ledger_in_one_line(pg_url: str, silent_server: int, command: str) -> None:
    for url in unreachable_urls(pg_url, silent_server):
        with pytest.raises(StoreUnavailableError) as info:
            migrate.current(url) if command == "current" else migrate.upgrade(url)
        message = str(info.value)
        assert message.startswith("ledger (postgresql+psycopg://"), message
        assert "\n" not in message and SENTINEL not in message, message
        assert "***" in message


def test_migrate_current_still_answers_on_a_reachable_ledger(pg_url: str) -> None:
    engine = create_ledger_engine(pg_url, poolclass=NullPool)
    engine.dispose()
    assert migrate.current(pg_url) in (None, *[r.revision for r in _revisions()])


def _revisions() -> list[object]:
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).walk_revisions())
