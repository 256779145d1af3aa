"""The one store checker: reachable, round-trip latency, server version, for the ledger, InfluxDB and Redis.

``marketkeeper health``, the ``stores_check`` DAG and the hooks' ``test_connection`` all report through
:func:`check_stores` / :func:`check_client`, whatever built the clients (the environment or Connections).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from marketkeeper.errors import MarketkeeperError, StoreUnavailableError, first_line
from marketkeeper.settings import redact_url
from marketkeeper.store_set import StoreConfig

__all__ = ["StoreHealth", "check_client", "check_ledger", "check_stores", "redact_url"]


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


class Pingable(Protocol):
    """A store client that answers a round trip (the InfluxDB and Redis clients)."""

    def ping(self) -> object: ...

    def close(self) -> None: ...


def check_ledger(url: str) -> StoreHealth:
    """``SELECT 1`` round trip on the ledger database and its server version."""
    from marketkeeper.ledger.engine import create_ledger_engine

    try:
        target = make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        target = "(unparseable URL)"
    try:
        engine = create_ledger_engine(url)
    except MarketkeeperError as exc:
        return StoreHealth("ledger", True, False, target, error=first_line(exc))
    try:
        with engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(sa.text("SELECT 1"))
            latency_ms = (time.perf_counter() - started) * 1000
            info = engine.dialect.server_version_info or ()
            version = f"{engine.dialect.name} {'.'.join(str(p) for p in info)}".strip()
    except sa.exc.SQLAlchemyError as exc:
        cause = first_line(exc)
        return StoreHealth("ledger", True, False, target, error=cause)
    finally:
        engine.dispose()
    return StoreHealth("ledger", True, True, target, version=version, latency_ms=latency_ms)


def check_client(store: str, target: str, client: Pingable) -> StoreHealth:
    """Round-trip ``client`` (which this call closes; closing twice is harmless); a server that answers with
    an error is down to us."""
    target = redact_url(target)
    try:
        info = client.ping()
    except StoreUnavailableError as exc:
        return StoreHealth(store, True, False, target, error=exc.cause)
    except MarketkeeperError as exc:
        return StoreHealth(store, True, False, target, error=first_line(exc))
    finally:
        client.close()
    return StoreHealth(
        store,
        True,
        True,
        target,
        version=getattr(info, "version", None),
        latency_ms=getattr(info, "latency_ms", None),
    )


def _target(client: object) -> str:
    return redact_url(str(getattr(client, "url", "") or getattr(client, "target", "") or ""))


def check_stores(config: StoreConfig) -> list[StoreHealth]:
    """Check the ledger, InfluxDB and Redis as ``config`` names them, in that order.

    :raises ConfigurationError: a store's settings cannot even build a client (e.g. a malformed URL).
    """
    results = [check_ledger(config.ledger_url)]
    if config.influxdb is None:
        results.append(StoreHealth("influxdb", False, True, error=config.absent.get("influxdb", "not configured")))
    else:
        influxdb = config.influxdb()
        results.append(check_client("influxdb", _target(influxdb), influxdb))
    if config.redis is None:
        results.append(StoreHealth("redis", False, True, error=config.absent.get("redis", "not configured")))
    else:
        redis = config.redis()
        results.append(check_client("redis", _target(redis), redis))
    return results
