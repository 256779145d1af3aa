"""Airflow hooks that turn a Connection into marketkeeper's own InfluxDB and Redis clients.

A hook only reads a Connection; the clients (``marketkeeper.influxdb``, ``marketkeeper.redis_client``) do
the talking. :class:`RedisHook` builds on the Redis provider's hook, so a plain ``redis`` connection works as
well as a ``marketkeeper_redis`` one. Both hooks answer the UI's *Test* button through :func:`ping_client`.
The connection form fields live declaratively in :mod:`marketkeeper.airflow.provider`, which is what
Airflow 3.2+ reads (``get_connection_form_widgets`` is deprecated there and would drag in wtforms).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import quote

import attrs
from airflow.providers.redis.hooks.redis import ALLOWED_SSL_CERT_REQS
from airflow.providers.redis.hooks.redis import RedisHook as ProviderRedisHook
from airflow.sdk.bases.hook import BaseHook

from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.settings import redact, redact_url

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from marketkeeper.influxdb import InfluxDBClient
    from marketkeeper.redis_client import RedisClient

__all__ = ["InfluxDBHook", "PingTestMixin", "RedisHook", "ping_client"]

DEFAULT_INFLUXDB_PORT = 8086
DEFAULT_INFLUXDB_DATABASE = "marketkeeper"  # the same default as Settings.influxdb_bucket
DEFAULT_INFLUXDB_TIMEOUT = 10.0
DEFAULT_REDIS_PORT = 6379
DEFAULT_REDIS_PREFIX = "marketkeeper:"
DEFAULT_REDIS_SOCKET_TIMEOUT = 5.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
#: The extras the provider's RedisHook reads, and marketkeeper's own.
_REDIS_SSL_EXTRAS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")
_REDIS_EXTRAS = ("db", "prefix", "socket_timeout", "cluster", "startup_nodes", *_REDIS_SSL_EXTRAS)


class _Pingable(Protocol):
    def ping(self) -> Any: ...

    def close(self) -> None: ...


def ping_client(
    store: str, target: str, client: _Pingable, *, secrets: tuple[str | None, ...] = ()
) -> tuple[bool, str]:
    """Ping ``client`` once: ``(True, "<store> <version> answered in <n> ms")`` or ``(False, one-line cause)``.

    The one checker behind every hook's ``test_connection``.

    :param store: what to call the store in the message (``Redis``, ``InfluxDB``).
    :param target: where it is, already free of passwords (a redacted URL).
    :param secrets: credentials to mask should the server or the driver echo one.
    """
    from marketkeeper.health import check_client

    health = check_client(store, target, client)
    if not health.ok:
        return False, redact(f"{store} at {health.target} is unreachable: {health.error}", secrets)
    return True, f"{store} {health.version} answered in {health.latency_ms or 0.0:.1f} ms"


class PingTestMixin:
    """``test_connection`` for a hook whose ``get_conn()`` returns a client with ``ping()`` and ``close()``."""

    store_name: ClassVar[str]

    if TYPE_CHECKING:  # provided by the hook; declared here only for the type checker (the MRO must not see them)

        def get_conn(self) -> Any: ...

        def client_kwargs(self, conn: Connection | None = None) -> dict[str, Any]: ...

    def __repr__(self) -> str:
        # The connection id names the hook; its fields may hold secrets and never appear.
        attr = str(getattr(self, "conn_name_attr", "conn_id"))
        return f"{type(self).__name__}({attr}={getattr(self, attr, None)!r})"

    def test_connection(self) -> tuple[bool, str]:
        """Ping the server for the UI's *Test* button: ``(True, version and latency)`` or ``(False, why)``."""
        try:
            kwargs = self.client_kwargs()
            client = self.get_conn()
        except MarketkeeperError as exc:
            return False, str(exc)
        try:
            secrets = (kwargs.get("password"), kwargs.get("token"))
            return ping_client(self.store_name, redact_url(str(kwargs["url"])), client, secrets=secrets)
        finally:
            client.close()


def _extra(conn: Connection, conn_type: str, name: str) -> Any:
    """An extra by its plain name, or by the ``extra__<conn_type>__<name>`` spelling older UIs stored."""
    extras = conn.extra_dejson
    value = extras.get(name)
    for kind in (conn_type, conn.conn_type):
        if value in (None, ""):
            value = extras.get(f"extra__{kind}__{name}")
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


class InfluxDBHook(PingTestMixin, BaseHook):
    """Builds a :class:`marketkeeper.influxdb.InfluxDBClient` (v1 HTTP API) from an Airflow Connection.

    Connection fields: ``host`` and ``port`` (default 8086); ``schema`` is the protocol, ``http`` (default) or
    ``https``; ``login``/``password`` for v1 username/password auth, *or* the extra ``token`` for token auth.
    Extras: ``database`` (alias ``bucket``, default ``marketkeeper``), ``org``, ``retention_policy``,
    ``timeout`` (seconds, default 10) and ``gzip`` (default false: see ``InfluxDBClient``).

    :param influxdb_conn_id: the Airflow connection id to read.
    """

    conn_name_attr = "influxdb_conn_id"
    default_conn_name = "marketkeeper_influxdb_default"
    conn_type = "marketkeeper_influxdb"
    hook_name = "InfluxDB (v1 API, marketkeeper)"
    store_name = "InfluxDB"

    def __init__(self, influxdb_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.influxdb_conn_id = influxdb_conn_id

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
        gzip = _extra(conn, self.conn_type, "gzip")
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
            "gzip": _as_bool(gzip, conn_id=conn_id, name="gzip") if gzip is not None else False,
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


class RedisHook(PingTestMixin, ProviderRedisHook):
    """The Redis provider's hook with marketkeeper's key namespace: builds a :class:`RedisClient`.

    The provider reads the Connection (``host``, ``port``, ``login`` for Redis ACLs, ``password``, and the extras
    ``db``, ``ssl``, ``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_keyfile``, ``ssl_certfile``,
    ``ssl_check_hostname``), so a connection of the provider's ``redis`` type works here too. This hook adds the
    extras ``prefix`` (default ``marketkeeper:``) and ``socket_timeout`` (seconds, default 5; the provider sets
    none), checks the extras before the provider sees them (``"ssl": "false"`` is false, ``db`` an integer),
    and refuses cluster mode, which marketkeeper does not support.

    :param redis_conn_id: the Airflow connection id to read.
    """

    conn_name_attr = "redis_conn_id"
    default_conn_name = "marketkeeper_redis_default"
    conn_type = "marketkeeper_redis"
    hook_name = "Redis (marketkeeper)"
    store_name = "Redis"
    #: Connection types this hook reads: its own, and the Redis provider's.
    conn_types: ClassVar[tuple[str, ...]] = ("marketkeeper_redis", "redis")

    def __init__(self, redis_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(redis_conn_id=redis_conn_id, **kwargs)

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        """The connection with its extras checked and spelled the way the provider's hook reads them.

        :raises ConfigurationError: an extra is malformed, or cluster mode is asked for.
        """
        return cls._normalized(super().get_connection(conn_id))

    @classmethod
    def _normalized(cls, conn: Connection) -> Connection:
        conn_id = conn.conn_id
        extras = {name: value for name, value in conn.extra_dejson.items() if not name.startswith("extra__")}
        for name in _REDIS_EXTRAS:
            value = _extra(conn, cls.conn_type, name)
            if value is None:
                extras.pop(name, None)
            else:
                extras[name] = value
        if "cluster" in extras and _as_bool(extras["cluster"], conn_id=conn_id, name="cluster"):
            raise ConfigurationError(f"connection {conn_id!r}: Redis cluster mode is not supported by marketkeeper")
        db = _as_int(extras.get("db", 0), conn_id=conn_id, name="db")
        if db < 0:
            raise ConfigurationError(f"connection {conn_id!r}: 'db' must be >= 0, got {db}")
        extras["db"] = db
        for name in ("ssl", "ssl_check_hostname"):
            if name in extras:
                extras[name] = _as_bool(extras[name], conn_id=conn_id, name=name)
        if "ssl_cert_reqs" in extras and extras["ssl_cert_reqs"] not in ALLOWED_SSL_CERT_REQS:
            raise ConfigurationError(
                f"connection {conn_id!r}: 'ssl_cert_reqs' must be one of {', '.join(ALLOWED_SSL_CERT_REQS)}, "
                f"got {extras['ssl_cert_reqs']!r}"
            )
        if "socket_timeout" in extras:
            extras["socket_timeout"] = _as_float(extras["socket_timeout"], conn_id=conn_id, name="socket_timeout")
        # The provider treats these passwords as none; read them the same way everywhere.
        password = None if str(conn.password).lower() in ("none", "false", "") else conn.password
        return attrs.evolve(conn, extra=json.dumps(extras), password=password, port=conn.port or DEFAULT_REDIS_PORT)

    def client_kwargs(self, conn: Connection | None = None) -> dict[str, Any]:
        """Where the client points and how: ``url`` (carries the password: redact before showing), ``prefix``,
        ``socket_timeout``, ``password``.

        :param conn: the connection to read; fetched by ``redis_conn_id`` when omitted.
        :raises ConfigurationError: the connection is malformed (empty host, non-integer db, bad flags).
        """
        conn = self._normalized(conn) if conn is not None else self.get_connection(self.redis_conn_id)
        host = _require_host(conn, "Redis")
        port = conn.port or DEFAULT_REDIS_PORT
        extras = conn.extra_dejson
        # quote(safe="") so a password with @ : / % # survives the trip through the URL parser.
        userinfo = ""
        if conn.login or conn.password:
            userinfo = quote(conn.login or "", safe="")
            if conn.password:
                userinfo += ":" + quote(conn.password, safe="")
            userinfo += "@"
        scheme = "rediss" if extras.get("ssl") else "redis"
        prefix = extras.get("prefix")
        return {
            "url": f"{scheme}://{userinfo}{_url_host(host)}:{port}/{extras['db']}",
            "prefix": str(prefix) if prefix is not None else DEFAULT_REDIS_PREFIX,
            "socket_timeout": extras.get("socket_timeout", DEFAULT_REDIS_SOCKET_TIMEOUT),
            "password": conn.password,
        }

    def get_conn(self) -> RedisClient:
        """A new client for the connection, built by the provider's hook; the caller closes it.

        :raises ConfigurationError: the connection is malformed.
        """
        from marketkeeper.redis_client import RedisClient

        kwargs = self.client_kwargs()
        self.redis = None  # the provider caches its client; each call here hands out a new one
        raw = super().get_conn()
        # The provider sets no timeouts; the pool has opened no connection yet, so every one gets these.
        timeout = kwargs["socket_timeout"]
        raw.connection_pool.connection_kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        client = RedisClient.from_redis(raw, prefix=kwargs["prefix"])
        self.log.info("Redis connection %s: %r", self.redis_conn_id, client)
        return client
