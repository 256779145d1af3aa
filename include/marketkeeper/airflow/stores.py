"""Resolve the stores a task needs from Airflow Connections into a :class:`~marketkeeper.store_set.StoreConfig`,
so DAG tasks call the same service functions as the CLI with the same stores.

The ledger (``marketkeeper_ledger``) is required: it is the system of record. InfluxDB and Redis are optional;
a connection that does not exist resolves to :data:`NOT_CONFIGURED`, while a lookup that fails for any other
reason raises.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from airflow.sdk.exceptions import AirflowNotFoundException

from marketkeeper.errors import ConfigurationError, StoreUnavailableError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from marketkeeper.health import StoreHealth
    from marketkeeper.store_set import StoreConfig

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


def _require_type(conn: Connection, *conn_types: str) -> None:
    if conn.conn_type not in conn_types:
        expected = " or ".join(repr(t) for t in conn_types)
        raise ConfigurationError(
            f"Airflow connection {conn.conn_id!r} has type {conn.conn_type!r}; expected {expected}"
        )


def store_config() -> StoreConfig:
    """Where this deployment's stores are, from its Connections: the config every task's service call gets.

    :raises ConfigurationError: the ledger connection is missing, or a connection is malformed.
    """
    from marketkeeper.airflow.hooks import InfluxDBHook, RedisHook
    from marketkeeper.store_set import StoreConfig

    influxdb = get_optional_connection(INFLUXDB_CONN_ID)
    redis = get_optional_connection(REDIS_CONN_ID)
    if influxdb is not NOT_CONFIGURED:
        _require_type(influxdb, InfluxDBHook.conn_type)
    if redis is not NOT_CONFIGURED:
        _require_type(redis, *RedisHook.conn_types)
    return StoreConfig(
        ledger_url=ledger_url(),
        influxdb=None if influxdb is NOT_CONFIGURED else InfluxDBHook(influxdb_conn_id=INFLUXDB_CONN_ID).get_conn,
        redis=None if redis is NOT_CONFIGURED else RedisHook(redis_conn_id=REDIS_CONN_ID).get_conn,
        origin="Airflow connections",
        absent={
            "influxdb": f"Airflow connection {INFLUXDB_CONN_ID!r} is not defined: candles go to the SQL store",
            "redis": f"Airflow connection {REDIS_CONN_ID!r} is not defined: no cache",
        },
    )


def check_store(store: Store) -> StoreHealth:
    """Check one store through its Airflow Connection with the one checker (:mod:`marketkeeper.health`).

    :return: the store's health; ``configured=False`` when its optional connection does not exist.
    :raises StoreUnavailableError: the store is configured but did not answer (or answered with an error).
    :raises ConfigurationError: the connection is missing (ledger) or malformed.
    """
    from marketkeeper.health import check_stores

    config = store_config()
    health = {h.store: h for h in check_stores(_only(config, store))}[store.value]
    if health.configured and not health.ok:
        where = {Store.LEDGER: LEDGER_CONN_ID, Store.INFLUXDB: INFLUXDB_CONN_ID, Store.REDIS: REDIS_CONN_ID}[store]
        raise StoreUnavailableError(
            f"{store.value} at {health.target} (connection {where!r})", health.error or "no answer"
        )
    return health


def _only(config: StoreConfig, store: Store) -> StoreConfig:
    """``config`` with only ``store`` to check (the ledger is always in a config; it is checked regardless)."""
    from dataclasses import replace

    return replace(
        config,
        influxdb=config.influxdb if store is Store.INFLUXDB else None,
        redis=config.redis if store is Store.REDIS else None,
    )
