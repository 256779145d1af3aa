"""Run the ledger's Alembic migrations from Python: the CLI and the DAGs call these, not ``alembic``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import marketkeeper
from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.ledger.engine import create_ledger_engine
from marketkeeper.settings import get_settings, normalize_database_url


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
    # ConfigParser interpolates '%': a percent-encoded password would otherwise be mangled.
    config.set_main_option("sqlalchemy.url", resolved.replace("%", "%%"))
    return config


def _target(url: str | None) -> str:
    resolved = url if url is not None else get_settings().ledger_url
    return make_url(normalize_database_url(resolved)).render_as_string(hide_password=True)


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the ledger at ``url`` forward to ``revision``; a no-op when it is already there.

    :param url: the ledger's SQLAlchemy URL (default: the configured ledger).
    :param revision: an Alembic revision id, ``head``, or a relative step such as ``+1``.
    :raises MigrationError: Alembic does not know the revision or cannot plan the upgrade.
    """
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
    """
    engine = create_ledger_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
