"""Alembic environment of the ledger: URL from the Alembic config or the settings, metadata from the models.

``marketkeeper.ledger.migrate`` sets ``sqlalchemy.url``; the ``alembic`` command line leaves it unset and the
ledger configured by ``DATABASE_URL`` / ``MARKETKEEPER_HOME`` is migrated.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from marketkeeper.ledger import Base
from marketkeeper.ledger.engine import create_ledger_engine
from marketkeeper.ledger.types import NUMERIC_PRECISION, NUMERIC_SCALE, ExactNumeric, UTCDateTime
from marketkeeper.settings import get_settings

config = context.config

# Only the alembic command line configures logging; called from a task or the CLI, fileConfig would
# disable the host's loggers.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def get_url() -> str:
    """The ledger to migrate: the config's ``sqlalchemy.url`` when set, else the configured ledger."""
    return config.get_main_option("sqlalchemy.url") or get_settings().ledger_url


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the ledger's column types as plain SQLAlchemy types, so revisions never import the models."""
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, ExactNumeric):
        return (
            f"sa.Numeric(precision={NUMERIC_PRECISION}, scale={NUMERIC_SCALE})"
            f".with_variant(sa.String(length={NUMERIC_PRECISION + 2}), 'sqlite')"
        )
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
    )


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (``alembic upgrade --sql``) instead of running it."""
    url = get_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over a connection: the caller's (``config.attributes['connection']``) or a new one."""
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_ledger_engine(get_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
