"""Resolve the stores a task needs from Airflow Connections into a :class:`~marketkeeper.store_set.StoreConfig`,
so DAG tasks call the same service functions as the CLI with the same stores.

The ledger (``marketkeeper_ledger``) is required: it is the system of record. InfluxDB and Redis are optional;
a connection that does not exist resolves to :data:`NOT_CONFIGURED`, while a lookup that fails for any other
reason raises.

Under a distributed executor (CeleryExecutor...) a task may run on any worker, so what lives in one machine's
files (the embedded SQLite ledger with its lock files, a ``files:DIR`` source) is refused by
:func:`check_distributable` unless the operator declares a filesystem every worker shares
(:data:`SHARED_FILESYSTEM_ENV`).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
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
#: Set to 1 when every Airflow worker mounts the same filesystem at the same paths (NFS, a shared volume): then
#: the SQLite ledger, its lock files and ``files:DIR`` sources work under a distributed executor too.
SHARED_FILESYSTEM_ENV: Final = "MARKETKEEPER_SHARED_FILESYSTEM"
#: Executors whose tasks all run on the scheduler's machine (the others may run a task anywhere).
LOCAL_EXECUTORS: Final = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


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
        require_shared_filesystem(f"the SQLite ledger {path} (Airflow connection {conn_id!r}, DATABASE_URL)")
        return URL.create("sqlite", database=path).render_as_string(hide_password=False)
    raise ConfigurationError(
        f"Airflow connection {conn_id!r} has type {conn.conn_type!r}; the ledger needs 'postgres' or 'sqlite'"
    )


def distributed_executor() -> str | None:
    """The configured executor (``[core] executor``) that may run a task on another machine, or ``None``.

    Read when a task runs, never at DAG parse time. Each entry of a multi-executor list counts; a name is
    compared by its class name, so ``CeleryExecutor``, ``my_alias:...celery_executor.CeleryExecutor`` and a
    custom class all work; anything but :data:`LOCAL_EXECUTORS` counts as distributed.
    """
    from airflow.configuration import conf

    for entry in conf.get("core", "executor", fallback="LocalExecutor").split(","):
        entry = entry.strip()
        name = entry.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if name and name not in LOCAL_EXECUTORS:
            return entry
    return None


def shared_filesystem_declared(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator declared a filesystem every worker shares (``MARKETKEEPER_SHARED_FILESYSTEM=1``).

    :raises ConfigurationError: the variable is set to something that is not a yes/no value.
    """
    raw = (os.environ if environ is None else environ).get(SHARED_FILESYSTEM_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{SHARED_FILESYSTEM_ENV} must be 1 or 0, got {raw!r}")


def require_shared_filesystem(
    what: str, *, executor: str | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse ``what`` (something in one machine's files) when tasks may run on other machines.

    :param what: the thing and the setting that names it, for the message
        (``"the SQLite ledger /x (Airflow connection 'marketkeeper_ledger', DATABASE_URL)"``).
    :param executor: the distributed executor, if the caller already read it (default: :func:`distributed_executor`).
    :param environ: where to read :data:`SHARED_FILESYSTEM_ENV` (default: ``os.environ``).
    :raises ConfigurationError: the executor is distributed and no shared filesystem is declared.
    """
    executor = executor or distributed_executor()
    if executor is None or shared_filesystem_declared(environ):
        return
    raise ConfigurationError(
        f"{what} is on one machine's filesystem, but Airflow's [core] executor is {executor!r}, which may run "
        f"a task on any worker: use a PostgreSQL ledger and a ccxt or synthetic source, or set "
        f"{SHARED_FILESYSTEM_ENV}=1 if every worker mounts that path"
    )


def check_distributable(
    config: StoreConfig | str, sources: Iterable[str] = (), *, environ: Mapping[str, str] | None = None
) -> None:
    """Check that tasks using ``config``'s ledger and these market sources can run on any worker.

    A no-op under LocalExecutor or with a declared shared filesystem; otherwise a SQLite ledger or a
    ``files:DIR`` source is refused. Call it where a run plans its markets, before any work is mapped.

    :param config: the task's stores (or just the ledger URL).
    :param sources: the ``source`` spellings of the markets the run will touch.
    :param environ: where to read :data:`SHARED_FILESYSTEM_ENV` (default: ``os.environ``).
    :raises ConfigurationError: naming the first thing that cannot work and the setting that names it.
    """
    from sqlalchemy.engine import make_url

    from marketkeeper.sources import parse_source_spec

    executor = distributed_executor()
    if executor is None or shared_filesystem_declared(environ):
        return
    url = make_url(config if isinstance(config, str) else config.ledger_url)
    if url.get_backend_name() == "sqlite":
        require_shared_filesystem(
            f"the SQLite ledger {url.database} (Airflow connection {LEDGER_CONN_ID!r}, DATABASE_URL)",
            executor=executor,
            environ=environ,
        )
    for spec in dict.fromkeys(sources):
        kind, argument = parse_source_spec(spec)
        if kind == "files":
            require_shared_filesystem(
                f"the market source {spec!r} (directory {argument}, in the markets declaration)",
                executor=executor,
                environ=environ,
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
