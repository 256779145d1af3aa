"""One settings object for the domain package, read from the environment (12-factor).

Unset stores fall back to the embedded defaults: a SQLite ledger file under ``MARKETKEEPER_HOME`` and
no InfluxDB (candles go to the SQL store) and no Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Query parameters of a URL that carry a credential (libpq's ``password``, InfluxDB's ``p`` and ``token``).
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "p", "token", "access_token", "secret"})
_MASK = "***"


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


def redact_url(url: str) -> str:
    """``url`` with its password (and any credential in its query) replaced by ``***``, safe to print or log.

    Works for every URL marketkeeper reads: ``postgresql+psycopg://u:p@h/db``, ``redis://:p@h:6379/0``,
    ``http://u:p@h:8086``, ``postgresql://h/db?password=p``. Text that is not a URL comes back unchanged.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparseable authority (a bad port, say): hide everything before the host
        head, sep, tail = url.rpartition("@")
        return f"{head.split('://', 1)[0]}://{_MASK}@{tail}" if sep else url
    netloc = parts.netloc
    if password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username or ''}:{_MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode([(k, _MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact(text: str, secrets: Iterable[str | SecretStr | None]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (empty and unset secrets are skipped).

    For error messages that may echo what they were given (a driver's exception, a server's answer).
    """
    values = (s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets)
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, _MASK)
    return text


class Settings(BaseSettings):
    """Where the stores are. Field names match the environment variables (case-insensitive).

    Ledger timeouts, all in seconds (``0`` disables one; a query parameter of ``DATABASE_URL`` of the same
    libpq or PostgreSQL name overrides it, see :func:`marketkeeper.ledger.engine.create_ledger_engine`):

    - ``MARKETKEEPER_DB_CONNECT_TIMEOUT`` (10): giving up on connecting.
    - ``MARKETKEEPER_DB_STATEMENT_TIMEOUT`` (300): the longest statement PostgreSQL runs.
    - ``MARKETKEEPER_DB_LOCK_TIMEOUT`` (30): the longest wait for a row or table lock.
    - ``MARKETKEEPER_DB_IDLE_IN_TRANSACTION_TIMEOUT`` (600): a session idle inside a transaction is closed.
    - ``MARKETKEEPER_DB_KEEPALIVES_IDLE`` (30), ``MARKETKEEPER_DB_KEEPALIVES_INTERVAL`` (10),
      ``MARKETKEEPER_DB_KEEPALIVES_COUNT`` (3): TCP keepalives, so a silently dead server is noticed.
    - ``MARKETKEEPER_DB_TCP_USER_TIMEOUT`` (60): unacknowledged data this long drops the connection (Linux).
    - ``MARKETKEEPER_DB_BUSY_TIMEOUT`` (30): SQLite's wait for another writer.

    ``repr`` and ``str`` never show a password: ``DATABASE_URL`` and ``INFLUXDB_URL`` are redacted and the
    other secrets are :class:`~pydantic.SecretStr`. Display :attr:`ledger_url_redacted`, never :attr:`ledger_url`.
    """

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
    #: Gzip write bodies and ask InfluxDB to gzip its answers (``INFLUXDB_GZIP``): only worth it over a slow link.
    influxdb_gzip: bool = False

    marketkeeper_db_connect_timeout: float = Field(default=10.0, ge=0)
    marketkeeper_db_statement_timeout: float = Field(default=300.0, ge=0)
    marketkeeper_db_lock_timeout: float = Field(default=30.0, ge=0)
    marketkeeper_db_idle_in_transaction_timeout: float = Field(default=600.0, ge=0)
    marketkeeper_db_keepalives_idle: int = Field(default=30, ge=1)
    marketkeeper_db_keepalives_interval: int = Field(default=10, ge=1)
    marketkeeper_db_keepalives_count: int = Field(default=3, ge=1)
    marketkeeper_db_tcp_user_timeout: float = Field(default=60.0, ge=0)
    marketkeeper_db_busy_timeout: float = Field(default=30.0, ge=0)

    #: Keys of the market-data HTTP API (``marketkeeper serve``), comma-separated; bots send one as
    #: ``Authorization: Bearer KEY``. A secret: never shown in ``repr``, logs or errors.
    marketkeeper_api_keys: SecretStr | None = None
    #: Serve the market-data HTTP API without a key: an explicit opt-in, off by default.
    marketkeeper_api_allow_anonymous: bool = False
    #: Seconds a cached candle query lives in Redis, and the largest answer (bytes) cached.
    marketkeeper_cache_ttl: float = Field(default=3600.0, gt=0)
    marketkeeper_cache_max_entry_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    #: Days ``ledger_maintenance`` keeps the platform's own rows (``marketkeeper maintenance``).
    marketkeeper_keep_quality_runs_days: int = Field(default=90, ge=1)
    marketkeeper_keep_quarantined_days: int = Field(default=180, ge=1)
    marketkeeper_keep_system_events_days: int = Field(default=30, ge=1)
    marketkeeper_keep_filled_gaps_days: int = Field(default=30, ge=1)
    marketkeeper_keep_audit_days: int = Field(default=365, ge=1)

    @field_validator("database_url", "influxdb_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url", "influxdb_token", "influxdb_password", "marketkeeper_api_keys", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # pydantic builds both repr() and str() from these pairs.
        for name, value in super().__repr_args__():
            if name in ("database_url", "influxdb_url") and isinstance(value, str):
                value = redact_url(value)
            yield name, value

    @property
    def ledger_url(self) -> str:
        """The SQLAlchemy URL of the ledger: ``DATABASE_URL`` or the embedded SQLite file (holds the password)."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        path = (self.marketkeeper_home / "ledger.sqlite").resolve()
        return f"sqlite:///{path}"

    @property
    def ledger_url_redacted(self) -> str:
        """:attr:`ledger_url` with its password hidden: the form to print, log or store."""
        return redact_url(self.ledger_url)

    @property
    def influxdb_url_redacted(self) -> str | None:
        """``INFLUXDB_URL`` with its password hidden, or ``None`` when unset."""
        return redact_url(self.influxdb_url) if self.influxdb_url else None

    @property
    def secrets(self) -> list[str]:
        """Every credential these settings hold, for :func:`redact` over text that might echo one."""
        found: list[str] = []
        for url in (self.database_url, self.influxdb_url, self.redis_url):
            text = url.get_secret_value() if isinstance(url, SecretStr) else url
            if text:
                try:
                    password = urlsplit(text).password
                except ValueError:
                    password = None
                if password:
                    found.extend({password, unquote(password)})
        if self.marketkeeper_api_keys is not None:
            found.extend(k.strip() for k in self.marketkeeper_api_keys.get_secret_value().split(",") if k.strip())
        for secret in (self.influxdb_token, self.influxdb_password):
            if secret is not None and secret.get_secret_value():
                found.append(secret.get_secret_value())
        return found

    @property
    def uses_embedded_ledger(self) -> bool:
        return not self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
