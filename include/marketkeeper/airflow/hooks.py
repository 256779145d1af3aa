"""Airflow hooks that turn a Connection into marketkeeper's own InfluxDB and Redis clients.

A hook only reads a Connection; the clients (``marketkeeper.influxdb``, ``marketkeeper.redis_client``) do
the talking. The connection form fields live declaratively in :mod:`marketkeeper.airflow.provider`, which is
what Airflow 3.2+ reads (``get_connection_form_widgets`` is deprecated there and would drag in wtforms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk.bases.hook import BaseHook

from marketkeeper.errors import ConfigurationError, MarketkeeperError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from marketkeeper.influxdb import InfluxDBClient
    from marketkeeper.redis_client import RedisClient

DEFAULT_INFLUXDB_PORT = 8086
DEFAULT_INFLUXDB_DATABASE = "marketkeeper"  # the same default as Settings.influxdb_bucket
DEFAULT_INFLUXDB_TIMEOUT = 10.0
DEFAULT_REDIS_PORT = 6379
DEFAULT_REDIS_PREFIX = "marketkeeper:"
DEFAULT_REDIS_SOCKET_TIMEOUT = 5.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _extra(conn: Connection, conn_type: str, name: str) -> Any:
    """An extra by its plain name, or by the ``extra__<conn_type>__<name>`` spelling older UIs stored."""
    extras = conn.extra_dejson
    value = extras.get(name)
    if value in (None, ""):
        value = extras.get(f"extra__{conn_type}__{name}")
    return None if value == "" else value


def _as_bool(value: Any, *, conn_id: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"connection {conn_id!r}: extra {name!r} must be a boolean, got {value!r}")


def _as_float(value: Any, *, conn_id: str, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"connection {conn_id!r}: extra {name!r} must be a number, got {value!r}") from exc
    if number <= 0:
        raise ConfigurationError(f"connection {conn_id!r}: extra {name!r} must be positive, got {value!r}")
    return number


def _as_int(value: Any, *, conn_id: str, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"connection {conn_id!r}: {name!r} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"connection {conn_id!r}: {name!r} must be an integer, got {value!r}") from exc


def _url_host(host: str) -> str:
    # An IPv6 literal needs brackets inside a URL authority.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _require_host(conn: Connection, store: str) -> str:
    host = (conn.host or "").strip()
    if not host:
        raise ConfigurationError(f"connection {conn.conn_id!r}: {store} host is empty")
    if "://" in host:
        raise ConfigurationError(
            f"connection {conn.conn_id!r}: host must be a bare host name, not a URL ({store} scheme and port "
            "have their own fields)"
        )
    return host


class InfluxDBHook(BaseHook):
    """Builds a :class:`marketkeeper.influxdb.InfluxDBClient` (v1 HTTP API) from an Airflow Connection.

    Connection fields: ``host`` and ``port`` (default 8086); ``schema`` is the protocol, ``http`` (default) or
    ``https``; ``login``/``password`` for v1 username/password auth, *or* the extra ``token`` for token auth.
    Extras: ``database`` (alias ``bucket``, default ``marketkeeper``), ``org``, ``retention_policy`` and
    ``timeout`` (seconds, default 10).

    :param influxdb_conn_id: the Airflow connection id to read.
    """

    conn_name_attr = "influxdb_conn_id"
    default_conn_name = "marketkeeper_influxdb_default"
    conn_type = "marketkeeper_influxdb"
    hook_name = "InfluxDB (v1 API, marketkeeper)"

    def __init__(self, influxdb_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.influxdb_conn_id = influxdb_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(influxdb_conn_id={self.influxdb_conn_id!r})"

    def client_kwargs(self, conn: Connection | None = None) -> dict[str, Any]:
        """The keyword arguments :class:`InfluxDBClient` is built with (holds secrets: never log it).

        :param conn: the connection to read; fetched by ``influxdb_conn_id`` when omitted.
        :raises ConfigurationError: the connection is malformed (bad protocol, both auth kinds, bad timeout).
        """
        conn = conn or self.get_connection(self.influxdb_conn_id)
        conn_id = conn.conn_id
        host = _require_host(conn, "InfluxDB")
        scheme = (conn.schema or "http").strip().lower()
        if scheme not in ("http", "https"):
            raise ConfigurationError(
                f"connection {conn_id!r}: schema is the protocol (http/https), got {conn.schema!r}; "
                "put the database in the extra 'database'"
            )
        port = conn.port or DEFAULT_INFLUXDB_PORT
        token = _extra(conn, self.conn_type, "token")
        if token and (conn.login or conn.password):
            raise ConfigurationError(
                f"connection {conn_id!r}: set either login/password or the extra 'token', not both"
            )
        database = (
            _extra(conn, self.conn_type, "database")
            or _extra(conn, self.conn_type, "bucket")
            or DEFAULT_INFLUXDB_DATABASE
        )
        timeout = _extra(conn, self.conn_type, "timeout")
        return {
            "url": f"{scheme}://{_url_host(host)}:{port}",
            "database": str(database),
            "token": str(token) if token else None,
            "username": conn.login or None,
            "password": conn.password or None,
            "org": _extra(conn, self.conn_type, "org"),
            "retention_policy": _extra(conn, self.conn_type, "retention_policy"),
            "timeout": (
                _as_float(timeout, conn_id=conn_id, name="timeout") if timeout is not None else DEFAULT_INFLUXDB_TIMEOUT
            ),
        }

    def get_conn(self) -> InfluxDBClient:
        """A new client for the connection; the caller closes it.

        :raises ConfigurationError: the connection is malformed.
        """
        from marketkeeper.influxdb import InfluxDBClient

        kwargs = self.client_kwargs()
        url = kwargs.pop("url")
        self.log.info(
            "InfluxDB connection %s: %s database %s (%s auth)",
            self.influxdb_conn_id,
            url,
            kwargs["database"],
            "token" if kwargs["token"] else "password" if kwargs["username"] else "no",
        )
        return InfluxDBClient(url, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        """Ping the server for the UI's *Test* button: ``(True, version and latency)`` or ``(False, why)``."""
        try:
            client = self.get_conn()
        except MarketkeeperError as exc:
            return False, str(exc)
        try:
            info = client.ping()
        except MarketkeeperError as exc:
            return False, str(exc)
        finally:
            client.close()
        return True, f"InfluxDB {info.version} answered in {info.latency_ms:.1f} ms"


class RedisHook(BaseHook):
    """Builds a :class:`marketkeeper.redis_client.RedisClient` from an Airflow Connection.

    Connection fields: ``host``, ``port`` (default 6379), ``password`` and, for Redis ACLs, ``login``.
    Extras: ``db`` (default 0), ``prefix`` (default ``marketkeeper:``), ``ssl`` (``rediss://``) and
    ``socket_timeout`` (seconds, default 5).

    :param redis_conn_id: the Airflow connection id to read.
    """

    conn_name_attr = "redis_conn_id"
    default_conn_name = "marketkeeper_redis_default"
    conn_type = "marketkeeper_redis"
    hook_name = "Redis (marketkeeper)"

    def __init__(self, redis_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.redis_conn_id = redis_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(redis_conn_id={self.redis_conn_id!r})"

    def client_kwargs(self, conn: Connection | None = None) -> dict[str, Any]:
        """The arguments :class:`RedisClient` is built with; ``url`` carries the password, so never log it.

        :param conn: the connection to read; fetched by ``redis_conn_id`` when omitted.
        :raises ConfigurationError: the connection is malformed (empty host, non-integer db, bad flags).
        """
        conn = conn or self.get_connection(self.redis_conn_id)
        conn_id = conn.conn_id
        host = _require_host(conn, "Redis")
        port = conn.port or DEFAULT_REDIS_PORT
        db_value = _extra(conn, self.conn_type, "db")
        db = _as_int(db_value, conn_id=conn_id, name="db") if db_value is not None else 0
        if db < 0:
            raise ConfigurationError(f"connection {conn_id!r}: 'db' must be >= 0, got {db}")
        ssl_value = _extra(conn, self.conn_type, "ssl")
        ssl = _as_bool(ssl_value, conn_id=conn_id, name="ssl") if ssl_value is not None else False
        prefix = _extra(conn, self.conn_type, "prefix")
        timeout = _extra(conn, self.conn_type, "socket_timeout")
        # quote(safe="") so a password with @ : / % # survives the trip through the URL parser.
        userinfo = ""
        if conn.login or conn.password:
            userinfo = quote(conn.login or "", safe="")
            if conn.password:
                userinfo += ":" + quote(conn.password, safe="")
            userinfo += "@"
        scheme = "rediss" if ssl else "redis"
        return {
            "url": f"{scheme}://{userinfo}{_url_host(host)}:{port}/{db}",
            "prefix": str(prefix) if prefix is not None else DEFAULT_REDIS_PREFIX,
            "socket_timeout": (
                _as_float(timeout, conn_id=conn_id, name="socket_timeout")
                if timeout is not None
                else DEFAULT_REDIS_SOCKET_TIMEOUT
            ),
        }

    def get_conn(self) -> RedisClient:
        """A new client for the connection; the caller closes it.

        :raises ConfigurationError: the connection is malformed.
        """
        from marketkeeper.redis_client import RedisClient

        kwargs = self.client_kwargs()
        url = kwargs.pop("url")
        client = RedisClient(url, **kwargs)
        self.log.info("Redis connection %s: %r", self.redis_conn_id, client)
        return client

    def test_connection(self) -> tuple[bool, str]:
        """Ping the server for the UI's *Test* button: ``(True, version and latency)`` or ``(False, why)``."""
        try:
            client = self.get_conn()
        except MarketkeeperError as exc:
            return False, str(exc)
        try:
            info = client.ping()
        except MarketkeeperError as exc:
            return False, str(exc)
        finally:
            client.close()
        return True, f"Redis {info.version} answered in {info.latency_ms:.1f} ms"
