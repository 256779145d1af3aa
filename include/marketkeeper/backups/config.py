"""Backup settings from the environment: where backups go, InfluxDB's RPC address, rotation counts.

- ``MARKETKEEPER_BACKUP_URL``: folder or bucket (``file:///...``, ``s3://bucket/prefix``); default
  ``file://$MARKETKEEPER_HOME/backups``.
- ``MARKETKEEPER_BACKUP_CONN_ID``: the Airflow connection with the object store's credentials.
- ``INFLUXDB_RPC_ADDRESS``: ``host:port`` of influxd's RPC service; default INFLUXDB_URL's host and
  ``INFLUXDB_RPC_PORT`` (8088).
- ``MARKETKEEPER_BACKUP_KEEP_DAILY``, ``_WEEKLY``, ``_MONTHLY``: GFS rotation counts (7, 4, 6).
- ``MARKETKEEPER_BACKUP_INFLUXDB_SETTLE``: seconds of newest candles left out of the InfluxDB figures (600).
- ``MARKETKEEPER_BACKUP_ABANDON_AFTER``: seconds after which a ``running`` attempt whose process cannot be asked
  about (another host, a row older than migration 0008) is settled as abandoned (86400).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketkeeper.backups.rotation import Retention
from marketkeeper.settings import get_settings

__all__ = ["BackupSettings"]


class BackupSettings(BaseSettings):
    """Where backups go and how many are kept (field names are the environment variables)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    marketkeeper_backup_url: str | None = None
    marketkeeper_backup_conn_id: str | None = None
    influxdb_rpc_address: str | None = None
    influxdb_rpc_port: int = Field(default=8088, ge=1, le=65535)
    marketkeeper_backup_keep_daily: int = Field(default=7, ge=0)
    marketkeeper_backup_keep_weekly: int = Field(default=4, ge=0)
    marketkeeper_backup_keep_monthly: int = Field(default=6, ge=0)
    marketkeeper_backup_influxdb_settle: float = Field(default=600.0, ge=0)
    marketkeeper_backup_abandon_after: float = Field(default=86400.0, gt=0)

    @property
    def url(self) -> str:
        """The backup folder or bucket."""
        if self.marketkeeper_backup_url:
            return self.marketkeeper_backup_url
        return (get_settings().marketkeeper_home / "backups").resolve().as_uri()

    def rpc_address(self, influxdb_url: str) -> str:
        """influxd's RPC ``host:port`` for the server at ``influxdb_url``."""
        if self.influxdb_rpc_address:
            return self.influxdb_rpc_address
        host = urlsplit(influxdb_url).hostname or "127.0.0.1"
        return f"{host}:{self.influxdb_rpc_port}"

    @property
    def abandon_after(self) -> timedelta:
        """How long an attempt whose process cannot be asked about is presumed still running."""
        return timedelta(seconds=self.marketkeeper_backup_abandon_after)

    @property
    def retention(self) -> Retention:
        return Retention(
            daily=self.marketkeeper_backup_keep_daily,
            weekly=self.marketkeeper_backup_keep_weekly,
            monthly=self.marketkeeper_backup_keep_monthly,
        )
