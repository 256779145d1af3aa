"""One settings object for the domain package, read from the environment (12-factor).

Unset stores fall back to the embedded defaults: a SQLite ledger file under ``MARKETKEEPER_HOME`` and
no InfluxDB (candles go to the SQL store) and no Redis.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalize_database_url(url: str) -> str:
    """Map the URL spellings users already have onto the sync drivers marketkeeper ships.

    The reference designs write ``postgresql+asyncpg://``; ``postgres://`` comes from Heroku-style
    environments. marketkeeper's ledger code is synchronous and uses psycopg 3.
    """
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


class Settings(BaseSettings):
    """Where the stores are. Field names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    marketkeeper_home: Path = Path("var")
    database_url: str | None = None
    redis_url: SecretStr | None = None
    influxdb_url: str | None = None
    influxdb_token: SecretStr | None = None
    influxdb_username: str | None = None
    influxdb_password: SecretStr | None = None
    influxdb_org: str | None = None
    influxdb_bucket: str = "marketkeeper"

    @field_validator("database_url", "influxdb_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url", "influxdb_token", "influxdb_password", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def ledger_url(self) -> str:
        """The SQLAlchemy URL of the ledger: ``DATABASE_URL`` or the embedded SQLite file."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        path = (self.marketkeeper_home / "ledger.sqlite").resolve()
        return f"sqlite:///{path}"

    @property
    def uses_embedded_ledger(self) -> bool:
        return not self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
