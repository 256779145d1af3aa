"""Run the ledger's Alembic migrations from Python: the CLI and the DAGs call these, not ``alembic``."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import marketkeeper
from marketkeeper.errors import ConfigurationError, MarketkeeperError, StoreUnavailableError
from marketkeeper.ledger.engine import create_ledger_engine, ledger_target
from marketkeeper.settings import get_settings, normalize_database_url, redact


class MigrationError(MarketkeeperError):
    """Alembic refused a migration command (an unknown revision, a broken history)."""


def migrations_dir() -> Path:
    """The repository's ``migrations/`` folder (marketkeeper is installed editable from the repository).

    :raises ConfigurationError: the folder is not there, e.g. marketkeeper was installed as a plain wheel.
    """
    folder = Path(marketkeeper.__file__).resolve().parents[2] / "migrations"
    if not (folder / "env.py").is_file():
        raise ConfigurationError(
            f"the ledger migrations are not at {folder}: install marketkeeper editable from its repository "
            "(pip install -e .) so that migrations/ sits beside include/"
        )
    return folder


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the ledger at ``url`` (default: the configured ledger), without any ini file.

    :param url: the ledger's SQLAlchemy URL.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    resolved = normalize_database_url(url if url is not None else get_settings().ledger_url)
    if resolved.startswith("postgresql") and "statement_timeout" not in resolved:
        # A migration may rewrite a large table: no statement timeout (lock_timeout still bounds the waits).
        resolved += ("&" if "?" in resolved else "?") + "statement_timeout=0"
    # ConfigParser interpolates '%': a percent-encoded password would otherwise be mangled.
    config.set_main_option("sqlalchemy.url", resolved.replace("%", "%%"))
    return config


def _target(url: str | None) -> str:
    resolved = url if url is not None else get_settings().ledger_url
    try:
        return ledger_target(make_url(normalize_database_url(resolved)))
    except (sa.exc.ArgumentError, ValueError):
        return "the configured ledger"


def _unavailable(url: str | None, exc: sa.exc.DBAPIError) -> StoreUnavailableError:
    """A one-line, password-free error for a ledger that refused or dropped the connection."""
    resolved = url if url is not None else get_settings().ledger_url
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    cause = lines[0].strip() if lines else type(exc).__name__
    try:
        password = make_url(normalize_database_url(resolved)).password
    except (sa.exc.ArgumentError, ValueError):
        password = None
    return StoreUnavailableError(f"ledger ({_target(url)})", redact(cause, [password, *get_settings().secrets]))


def _probe(url: str | None) -> None:
    """Open and close one connection, so that an unreachable ledger fails before Alembic starts.

    :raises StoreUnavailableError: the ledger did not accept a connection.
    :raises ConfigurationError: the URL is malformed or names an unsupported database.
    """
    engine = create_ledger_engine(url, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        raise _unavailable(url, exc) from exc
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the ledger at ``url`` forward to ``revision``; a no-op when it is already there.

    :param url: the ledger's SQLAlchemy URL (default: the configured ledger).
    :param revision: an Alembic revision id, ``head``, or a relative step such as ``+1``.
    :raises MigrationError: Alembic does not know the revision or cannot plan the upgrade.
    :raises StoreUnavailableError: the ledger cannot be reached (one line, no password).
    :raises ConfigurationError: the URL is malformed or names an unsupported database.
    """
    _probe(url)
    try:
        command.upgrade(alembic_config(url), revision)
    except CommandError as exc:
        raise MigrationError(f"could not upgrade the ledger at {_target(url)} to {revision}: {exc}") from exc


def downgrade(url: str | None, revision: str) -> None:
    """Migrate the ledger at ``url`` back to ``revision`` (``base`` drops every ledger table).

    :param url: the ledger's SQLAlchemy URL (``None``: the configured ledger).
    :param revision: an Alembic revision id, ``base``, or a relative step such as ``-1``.
    :raises MigrationError: Alembic does not know the revision or cannot plan the downgrade.
    """
    try:
        command.downgrade(alembic_config(url), revision)
    except CommandError as exc:
        raise MigrationError(f"could not downgrade the ledger at {_target(url)} to {revision}: {exc}") from exc


def current(url: str | None = None) -> str | None:
    """The revision the ledger at ``url`` is at, or ``None`` when it was never migrated.

    :param url: the ledger's SQLAlchemy URL (default: the configured ledger).
    :raises StoreUnavailableError: the ledger cannot be reached (one line, no password).
    :raises ConfigurationError: the URL is malformed or names an unsupported database.
    """
    engine = create_ledger_engine(url, poolclass=NullPool)
    try:
        try:
            connection = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise _unavailable(url, exc) from exc
        with connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
