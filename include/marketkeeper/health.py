"""Round-trip checks of every configured store: reachable, how fast, which server version.

The CLI's ``marketkeeper health`` and the ``stores_check`` DAG both report through :func:`check_stores`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from marketkeeper.errors import ConfigurationError, MarketkeeperError, StoreUnavailableError
from marketkeeper.settings import Settings


@dataclass(frozen=True)
class StoreHealth:
    """One store's answer; ``configured=False``: the store is not in use (an embedded default applies)."""

    store: str
    configured: bool
    ok: bool
    target: str = ""
    version: str | None = None
    latency_ms: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message: what an operator needs, without a traceback."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_ledger(url: str) -> StoreHealth:
    """``SELECT 1`` round trip on the ledger database and its server version."""
    from marketkeeper.ledger.engine import create_ledger_engine

    target = make_url(url).render_as_string(hide_password=True)
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(sa.text("SELECT 1"))
            latency_ms = (time.perf_counter() - started) * 1000
            info = engine.dialect.server_version_info or ()
            version = f"{engine.dialect.name} {'.'.join(str(p) for p in info)}".strip()
    except sa.exc.SQLAlchemyError as exc:
        cause = _one_line(exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig else exc)
        return StoreHealth("ledger", True, False, target, error=cause)
    finally:
        engine.dispose()
    return StoreHealth("ledger", True, True, target, version=version, latency_ms=latency_ms)


def _check_ping(store: str, target: str, ping: Callable[[], object]) -> StoreHealth:
    try:
        info = ping()
    except StoreUnavailableError as exc:
        return StoreHealth(store, True, False, target, error=exc.cause)
    except MarketkeeperError as exc:  # a server that answers with an error (bad credentials, say) is down to us
        return StoreHealth(store, True, False, target, error=_one_line(exc))
    return StoreHealth(
        store,
        True,
        True,
        target,
        version=getattr(info, "version", None),
        latency_ms=getattr(info, "latency_ms", None),
    )


def check_influxdb(settings: Settings) -> StoreHealth:
    if not settings.influxdb_url:
        return StoreHealth("influxdb", False, True, error="INFLUXDB_URL not set: candles go to the SQL store")
    from marketkeeper.influxdb import InfluxDBClient

    client = InfluxDBClient.from_settings(settings)
    try:
        return _check_ping("influxdb", redact_url(settings.influxdb_url), client.ping)
    finally:
        client.close()


def check_redis(settings: Settings) -> StoreHealth:
    if settings.redis_url is None:
        return StoreHealth("redis", False, True, error="REDIS_URL not set: no cache, locks in the ledger")
    from marketkeeper.redis_client import RedisClient

    url = settings.redis_url.get_secret_value()
    try:
        client = RedisClient(url)
    except ValueError as exc:
        raise ConfigurationError(f"REDIS_URL is not a valid Redis URL: {exc}") from exc
    try:
        return _check_ping("redis", redact_url(url), client.ping)
    finally:
        client.close()


def check_stores(settings: Settings) -> list[StoreHealth]:
    """Check the ledger, InfluxDB and Redis as ``settings`` configure them, in that order."""
    return [check_ledger(settings.ledger_url), check_influxdb(settings), check_redis(settings)]
