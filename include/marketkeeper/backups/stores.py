"""Which backup tool serves each store of a deployment: the ledger's by its backend (pg_dump for PostgreSQL,
SQLite's backup API for the embedded file), InfluxDB's and Redis's when they are configured."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.engine import make_url

from marketkeeper.backups.base import StoreBackup
from marketkeeper.backups.config import BackupSettings
from marketkeeper.errors import ConfigurationError
from marketkeeper.store_set import StoreConfig

__all__ = ["open_tool", "tool_class"]


def _embedded_ledger(config: StoreConfig) -> bool:
    return make_url(config.ledger_url).get_backend_name() == "sqlite"


def tool_class(config: StoreConfig, store: str) -> type[StoreBackup]:
    """The backup tool of ``store`` in this deployment (each imports only its own client)."""
    if store == "ledger":
        if _embedded_ledger(config):
            from marketkeeper.backups.sqlite import SQLiteBackup

            return SQLiteBackup
        from marketkeeper.backups.postgres import PostgresBackup

        return PostgresBackup
    if store == "influxdb":
        from marketkeeper.backups.influxdb import InfluxDBBackup

        return InfluxDBBackup
    from marketkeeper.backups.redis import RedisBackup

    return RedisBackup


@contextlib.contextmanager
def open_tool(config: StoreConfig, store: str, settings: BackupSettings) -> Iterator[StoreBackup]:
    """The backup tool of ``store`` over this deployment's server; its client closed afterwards.

    :raises ConfigurationError: ``store`` is not configured here.
    """
    if store == "ledger" and _embedded_ledger(config):
        from marketkeeper.backups.sqlite import SQLiteBackup
        from marketkeeper.settings import get_settings

        yield SQLiteBackup(config.ledger_url, busy_timeout=get_settings().marketkeeper_db_busy_timeout)
    elif store == "ledger":
        from marketkeeper.backups.postgres import PostgresBackup

        yield PostgresBackup(config.ledger_url)
    elif store == "influxdb" and config.influxdb is not None:
        from marketkeeper.backups.influxdb import InfluxDBBackup

        with config.influxdb() as client:
            yield InfluxDBBackup(
                client,
                rpc_address=settings.rpc_address(client.url),
                settle_seconds=settings.marketkeeper_backup_influxdb_settle,
            )
    elif store == "redis" and config.redis is not None:
        from marketkeeper.backups.redis import RedisBackup

        with config.redis() as client:
            yield RedisBackup(client)
    else:
        raise ConfigurationError(f"{store} is not configured here ({config.origin})")
