"""Resolve the stores a task needs from Airflow Connections, so DAGs and the CLI reach the same stores.

The ledger (``marketkeeper_ledger``) is required: it is the system of record. InfluxDB and Redis are optional;
a connection that does not exist resolves to :data:`NOT_CONFIGURED`, while a lookup that fails for any other
reason raises.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from airflow.sdk.exceptions import AirflowNotFoundException

from marketkeeper.errors import ConfigurationError, MarketkeeperError, StoreUnavailableError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from marketkeeper.health import StoreHealth
    from marketkeeper.influxdb import InfluxDBClient
    from marketkeeper.redis_client import RedisClient
    from marketkeeper.store_set import StoreSet

LEDGER_CONN_ID: Final = "marketkeeper_ledger"
INFLUXDB_CONN_ID: Final = "marketkeeper_influxdb_default"
REDIS_CONN_ID: Final = "marketkeeper_redis_default"


class Store(enum.Enum):
    """The stores a task can need; the value is the name used in task ids and reports."""

    LEDGER = "ledger"
    INFLUXDB = "influxdb"
    REDIS = "redis"


class NotConfigured(enum.Enum):
    """The answer for an optional store whose Airflow Connection does not exist: a choice, not an error."""

    NOT_CONFIGURED = "not configured"


NOT_CONFIGURED: Final = NotConfigured.NOT_CONFIGURED


def get_optional_connection(conn_id: str) -> Connection | Literal[NotConfigured.NOT_CONFIGURED]:
    """The connection ``conn_id``, or :data:`NOT_CONFIGURED` when no secrets backend defines it.

    :param conn_id: the Airflow connection id.
    :raises Exception: whatever the secrets backend raises for anything other than "not found".
    """
    from airflow.sdk.bases.hook import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return NOT_CONFIGURED


def ledger_url(conn_id: str = LEDGER_CONN_ID) -> str:
    """The SQLAlchemy URL (psycopg 3 or SQLite) of the ledger that connection ``conn_id`` points at.

    A ``postgres`` connection goes through ``PostgresHook.sqlalchemy_url`` (so its extras, IAM tokens and
    ``sqlalchemy_query`` apply); a ``sqlite`` connection names the database file in ``host``.

    :param conn_id: the Airflow connection id of the ledger.
    :raises ConfigurationError: the connection is missing, of another type, or names a relative SQLite path.
    """
    conn = get_optional_connection(conn_id)
    if conn is NOT_CONFIGURED:
        raise ConfigurationError(
            f"Airflow connection {conn_id!r} (the ledger) is not defined: add a postgres or sqlite "
            "connection, or run Airflow through scripts/airflow.sh, which derives it from DATABASE_URL"
        )
    if conn.conn_type == "postgres":
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        url = PostgresHook(postgres_conn_id=conn_id).sqlalchemy_url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)
    if conn.conn_type == "sqlite":
        from sqlalchemy.engine import URL

        path = (conn.host or conn.schema or "").strip()
        # A relative path would resolve against whatever directory a worker happens to start in.
        if not path or not Path(path).is_absolute():
            raise ConfigurationError(
                f"Airflow connection {conn_id!r}: sqlite ledger needs an absolute path in host, got {path!r}"
            )
        return URL.create("sqlite", database=path).render_as_string(hide_password=False)
    raise ConfigurationError(
        f"Airflow connection {conn_id!r} has type {conn.conn_type!r}; the ledger needs 'postgres' or 'sqlite'"
    )


def influxdb_client(
    conn_id: str = INFLUXDB_CONN_ID,
) -> InfluxDBClient | Literal[NotConfigured.NOT_CONFIGURED]:
    """A client for the InfluxDB behind ``conn_id`` (the caller closes it), or :data:`NOT_CONFIGURED`.

    :param conn_id: the Airflow connection id, of type ``marketkeeper_influxdb``.
    :raises ConfigurationError: the connection exists but is malformed.
    """
    from marketkeeper.airflow.hooks import InfluxDBHook

    conn = get_optional_connection(conn_id)
    if conn is NOT_CONFIGURED:
        return NOT_CONFIGURED
    _require_type(conn, InfluxDBHook.conn_type)
    return InfluxDBHook(influxdb_conn_id=conn_id).get_conn()


def redis_client(conn_id: str = REDIS_CONN_ID) -> RedisClient | Literal[NotConfigured.NOT_CONFIGURED]:
    """A client for the Redis behind ``conn_id`` (the caller closes it), or :data:`NOT_CONFIGURED`.

    :param conn_id: the Airflow connection id, of type ``marketkeeper_redis``.
    :raises ConfigurationError: the connection exists but is malformed.
    """
    from marketkeeper.airflow.hooks import RedisHook

    conn = get_optional_connection(conn_id)
    if conn is NOT_CONFIGURED:
        return NOT_CONFIGURED
    _require_type(conn, RedisHook.conn_type)
    return RedisHook(redis_conn_id=conn_id).get_conn()


def _require_type(conn: Connection, conn_type: str) -> None:
    if conn.conn_type != conn_type:
        raise ConfigurationError(
            f"Airflow connection {conn.conn_id!r} has type {conn.conn_type!r}; expected {conn_type!r}"
        )


def check_store(store: Store) -> StoreHealth:
    """Round-trip one store through its Airflow Connection.

    :param store: which store to check.
    :return: the store's health; ``configured=False`` when its optional connection does not exist.
    :raises StoreUnavailableError: the store is configured but did not answer (or answered with an error).
    :raises ConfigurationError: the connection is missing (ledger) or malformed.
    """
    from marketkeeper.health import StoreHealth, check_ledger

    if store is Store.LEDGER:
        health = check_ledger(ledger_url())
        if not health.ok:
            raise StoreUnavailableError(f"ledger ({health.target})", health.error or "no answer")
        return health

    from marketkeeper.airflow.hooks import InfluxDBHook, RedisHook
    from marketkeeper.health import redact_url

    conn_id = INFLUXDB_CONN_ID if store is Store.INFLUXDB else REDIS_CONN_ID
    conn = get_optional_connection(conn_id)
    if conn is NOT_CONFIGURED:
        return StoreHealth(
            store.value, configured=False, ok=True, error=f"Airflow connection {conn_id!r} is not defined"
        )
    hook = InfluxDBHook(influxdb_conn_id=conn_id) if store is Store.INFLUXDB else RedisHook(redis_conn_id=conn_id)
    _require_type(conn, hook.conn_type)
    target = redact_url(hook.client_kwargs(conn)["url"])
    label = f"{store.value} at {target} (connection {conn_id!r})"
    client = hook.get_conn()
    try:
        info = client.ping()
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(label, exc.cause) from exc
    except ConfigurationError:
        raise
    except MarketkeeperError as exc:  # the server answered, but with an error (bad credentials, say)
        raise StoreUnavailableError(label, str(exc)) from exc
    finally:
        client.close()
    return StoreHealth(
        store.value, configured=True, ok=True, target=target, version=info.version, latency_ms=info.latency_ms
    )


def open_store_set() -> StoreSet:
    """The ledger, candle store and Redis cache behind this deployment's Connections (the caller closes it)."""
    from marketkeeper.store_set import StoreSet

    influxdb = influxdb_client()
    redis = redis_client()
    return StoreSet.build(
        ledger_url(),
        None if influxdb is NOT_CONFIGURED else influxdb,
        None if redis is NOT_CONFIGURED else redis,
    )
