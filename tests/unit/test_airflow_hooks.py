"""The hooks turn Airflow Connections (from ``AIRFLOW_CONN_*`` variables) into the right client arguments.

No server is contacted: clients are built, never pinged.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import redis

from marketkeeper.errors import ConfigurationError

# Airflow writes under AIRFLOW_HOME as soon as it is imported: use a throwaway directory, never ~/airflow.
os.environ.setdefault("MARKETKEEPER_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="marketkeeper-airflow-"))
os.environ["AIRFLOW_HOME"] = os.environ["MARKETKEEPER_TEST_AIRFLOW_HOME"]

from marketkeeper.airflow import stores
from marketkeeper.airflow.hooks import InfluxDBHook, RedisHook
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.redis_client import RedisClient

pytestmark = pytest.mark.airflow

NASTY_PASSWORD = "p@ss:w/rd%#?&x y"  # every character that means something inside a URL


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture(autouse=True)
def no_store_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with none of marketkeeper's connections defined, whatever the caller's environment."""
    for conn_id in (stores.LEDGER_CONN_ID, stores.INFLUXDB_CONN_ID, stores.REDIS_CONN_ID, "mk_test"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)


# --- InfluxDB -------------------------------------------------------------------------------------------


def test_influxdb_password_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "mk_test",
        conn_type="marketkeeper_influxdb",
        host="influx.example",
        port=8087,
        schema="https",
        login="writer",
        password=NASTY_PASSWORD,
        extra={"database": "candles", "retention_policy": "one_year", "timeout": "2.5", "gzip": "true"},
    )
    kwargs = InfluxDBHook(influxdb_conn_id="mk_test").client_kwargs()
    assert kwargs == {
        "url": "https://influx.example:8087",
        "database": "candles",
        "token": None,
        "username": "writer",
        "password": NASTY_PASSWORD,
        "org": None,
        "retention_policy": "one_year",
        "timeout": 2.5,
        "gzip": True,
    }


def test_influxdb_token_auth_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        stores.INFLUXDB_CONN_ID,
        conn_type="marketkeeper_influxdb",
        host="127.0.0.1",
        extra={"token": "s3cret-token", "bucket": "mk_bucket", "org": "acme"},
    )
    kwargs = InfluxDBHook().client_kwargs()
    assert kwargs["url"] == "http://127.0.0.1:8086"  # http and 8086 when schema and port are empty
    assert kwargs["database"] == "mk_bucket"  # "bucket" is an alias of "database"
    assert (kwargs["token"], kwargs["username"], kwargs["password"]) == ("s3cret-token", None, None)
    assert kwargs["org"] == "acme"
    assert kwargs["timeout"] == 10.0
    assert kwargs["gzip"] is False  # writes and answers travel plain unless asked


def test_influxdb_default_database_and_prefixed_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "mk_test", conn_type="marketkeeper_influxdb", host="h")
    assert InfluxDBHook("mk_test").client_kwargs()["database"] == "marketkeeper"

    # Connections saved by older UIs keep extras as extra__<conn_type>__<field>.
    set_conn(
        monkeypatch,
        "mk_test",
        conn_type="marketkeeper_influxdb",
        host="h",
        extra={"extra__marketkeeper_influxdb__database": "legacy"},
    )
    assert InfluxDBHook("mk_test").client_kwargs()["database"] == "legacy"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "h", "schema": "candles"}, "protocol"),
        ({"host": "h", "login": "u", "password": "p", "extra": {"token": "t"}}, "not both"),
        ({"host": ""}, "host is empty"),
        ({"host": "http://h:8086"}, "not a URL"),
        ({"host": "h", "extra": {"timeout": "soon"}}, "timeout"),
    ],
)
def test_influxdb_malformed_connection_raises(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], message: str
) -> None:
    set_conn(monkeypatch, "mk_test", conn_type="marketkeeper_influxdb", **fields)
    with pytest.raises(ConfigurationError, match=message) as info:
        InfluxDBHook("mk_test").client_kwargs()
    assert "mk_test" in str(info.value)


def test_influxdb_get_conn_builds_the_client_without_leaking_secrets(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    set_conn(
        monkeypatch,
        "mk_test",
        conn_type="marketkeeper_influxdb",
        host="influx.example",
        login="writer",
        password=NASTY_PASSWORD,
        extra={"database": "candles"},
    )
    hook = InfluxDBHook("mk_test")
    with caplog.at_level(logging.DEBUG):
        client = hook.get_conn()
    try:
        assert isinstance(client, InfluxDBClient)
        assert (client.url, client.database) == ("http://influx.example:8086", "candles")
        assert client.session.auth == ("writer", NASTY_PASSWORD)
        logged = caplog.text + "".join(capfd.readouterr())
        assert "mk_test" in logged  # the hook did log, so the next assertion is not vacuous
        for text in (logged, repr(client), repr(hook)):
            assert NASTY_PASSWORD not in text
    finally:
        client.close()


# --- Redis ----------------------------------------------------------------------------------------------


def test_redis_url_quotes_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "mk_test",
        conn_type="marketkeeper_redis",
        host="cache.example",
        port=6380,
        password=NASTY_PASSWORD,
        extra={"db": "3", "prefix": "mk:"},
    )
    kwargs = RedisHook(redis_conn_id="mk_test").client_kwargs()
    assert NASTY_PASSWORD not in kwargs["url"]
    parsed = redis.connection.parse_url(kwargs["url"])
    assert (parsed["host"], parsed["port"], parsed["db"], parsed["password"]) == (
        "cache.example",
        6380,
        3,
        NASTY_PASSWORD,
    )
    assert kwargs["prefix"] == "mk:"
    assert kwargs["socket_timeout"] == 5.0


def test_redis_defaults_acl_user_and_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, stores.REDIS_CONN_ID, conn_type="marketkeeper_redis", host="127.0.0.1")
    kwargs = RedisHook().client_kwargs()
    assert kwargs["url"] == "redis://127.0.0.1:6379/0"
    assert kwargs["prefix"] == "marketkeeper:"

    set_conn(
        monkeypatch,
        stores.REDIS_CONN_ID,
        conn_type="marketkeeper_redis",
        host="cache",
        login="app",
        password="pw",
        extra={"ssl": "true", "socket_timeout": 1},
    )
    kwargs = RedisHook().client_kwargs()
    assert kwargs["url"] == "rediss://app:pw@cache:6379/0"
    assert kwargs["socket_timeout"] == 1.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"db": "two"}, "integer"), ({"db": -1}, ">= 0"), ({"ssl": "maybe"}, "boolean")],
)
def test_redis_malformed_extras_raise(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], message: str) -> None:
    set_conn(monkeypatch, "mk_test", conn_type="marketkeeper_redis", host="h", extra=extra)
    with pytest.raises(ConfigurationError, match=message):
        RedisHook("mk_test").client_kwargs()


def test_redis_get_conn_builds_the_client_without_leaking_secrets(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    set_conn(
        monkeypatch,
        "mk_test",
        conn_type="marketkeeper_redis",
        host="cache.example",
        password=NASTY_PASSWORD,
        extra={"db": 2, "prefix": "mk:"},
    )
    hook = RedisHook("mk_test")
    with caplog.at_level(logging.DEBUG):
        client = hook.get_conn()
    try:
        assert isinstance(client, RedisClient)
        kwargs = client.raw.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
            "cache.example",
            6379,
            2,
            NASTY_PASSWORD,
        )
        assert client.prefix == "mk:"
        logged = caplog.text + "".join(capfd.readouterr())
        assert "mk_test" in logged
        for text in (logged, repr(client), repr(hook)):
            assert NASTY_PASSWORD not in text
    finally:
        client.close()


def test_redis_hook_builds_on_the_provider_hook() -> None:
    from airflow.providers.redis.hooks.redis import RedisHook as ProviderRedisHook

    assert issubclass(RedisHook, ProviderRedisHook)
    assert RedisHook().redis_conn_id == "marketkeeper_redis_default"
    assert "redis" in RedisHook.conn_types


def test_a_provider_redis_connection_works_with_the_default_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "mk_test",
        conn_type="redis",
        host="cache.example",
        port=6390,
        login="app",
        password=NASTY_PASSWORD,
        extra={"db": 4, "ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": "false"},
    )
    client = RedisHook("mk_test").get_conn()
    try:
        pool = client.raw.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection)
        kwargs = pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["username"], kwargs["password"]) == (
            "cache.example",
            6390,
            4,
            "app",
            NASTY_PASSWORD,
        )
        assert kwargs["ssl_cert_reqs"] == "none"
        assert kwargs["ssl_check_hostname"] is False
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5.0, 5.0)
        assert client.prefix == "marketkeeper:"
    finally:
        client.close()


@pytest.mark.parametrize("password", ["None", "false", ""])
def test_passwords_the_provider_treats_as_none_are_none(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    set_conn(monkeypatch, "mk_test", conn_type="redis", host="h", password=password, extra={"ssl": "false"})
    client = RedisHook("mk_test").get_conn()
    try:
        assert client.raw.connection_pool.connection_kwargs["password"] is None
        assert not issubclass(client.raw.connection_pool.connection_class, redis.SSLConnection)  # "false" is false
    finally:
        client.close()
    assert RedisHook("mk_test").client_kwargs()["url"] == "redis://h:6379/0"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cluster": True}, "cluster"),
        ({"ssl_cert_reqs": "sometimes"}, "ssl_cert_reqs"),
        ({"socket_timeout": 0}, "positive"),
    ],
)
def test_redis_extras_the_provider_would_misread_are_refused(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], message: str
) -> None:
    set_conn(monkeypatch, "mk_test", conn_type="redis", host="h", extra=extra)
    with pytest.raises(ConfigurationError, match=message):
        RedisHook("mk_test").get_conn()
    ok, why = RedisHook("mk_test").test_connection()
    assert not ok and message in why


def test_ping_client_is_one_line_and_masks_echoed_secrets() -> None:
    from marketkeeper.airflow.hooks import ping_client
    from marketkeeper.errors import StoreUnavailableError
    from marketkeeper.redis_client import ServerInfo

    class Down:
        def ping(self) -> ServerInfo:
            raise StoreUnavailableError("Redis", f"AUTH {NASTY_PASSWORD} refused")

        def close(self) -> None:
            pass

    class Up:
        def ping(self) -> ServerInfo:
            return ServerInfo(version="7.2.4", latency_ms=0.42)

        def close(self) -> None:
            pass

    ok, message = ping_client("Redis", "redis://:***@h:6379/0", Down(), secrets=(NASTY_PASSWORD,))
    assert not ok
    assert message == "Redis at redis://:***@h:6379/0 is unreachable: AUTH *** refused"
    assert ping_client("Redis", "redis://h:6379/0", Up()) == (True, "Redis 7.2.4 answered in 0.4 ms")


# --- store resolution -----------------------------------------------------------------------------------


def test_optional_stores_without_a_connection_are_not_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Every deployment has its ledger connection (the stores are configured as one set).
    set_conn(monkeypatch, stores.LEDGER_CONN_ID, conn_type="sqlite", host=str(tmp_path / "ledger.sqlite"))
    config = stores.store_config()
    assert (config.influxdb, config.redis) == (None, None)
    health = stores.check_store(stores.Store.REDIS)
    assert (health.configured, health.store) == (False, "redis")


def test_a_failing_connection_lookup_raises_instead_of_meaning_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.bases.hook import BaseHook

    def broken_backend(conn_id: str) -> None:
        raise PermissionError(f"secrets backend refused {conn_id}")

    monkeypatch.setattr(BaseHook, "get_connection", broken_backend)
    with pytest.raises(PermissionError):
        stores.store_config()


def test_a_connection_of_the_wrong_type_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, stores.REDIS_CONN_ID, conn_type="postgres", host="h")
    with pytest.raises(ConfigurationError, match="type 'postgres'; expected 'marketkeeper_redis' or 'redis'"):
        stores.store_config()


def test_ledger_connection_is_required() -> None:
    with pytest.raises(ConfigurationError, match="marketkeeper_ledger"):
        stores.ledger_url()


def test_ledger_postgres_connection_becomes_a_psycopg3_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    set_conn(
        monkeypatch,
        stores.LEDGER_CONN_ID,
        conn_type="postgres",
        host="db.example",
        port=5433,
        login="ledger",
        password=NASTY_PASSWORD,
        schema="marketkeeper",
    )
    url = make_url(stores.ledger_url())
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.example",
        5433,
        "ledger",
        NASTY_PASSWORD,
        "marketkeeper",
    )


def test_ledger_sqlite_connection_names_an_absolute_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    set_conn(monkeypatch, stores.LEDGER_CONN_ID, conn_type="sqlite", host=str(path))
    assert stores.ledger_url() == f"sqlite:///{path}"

    set_conn(monkeypatch, stores.LEDGER_CONN_ID, conn_type="sqlite", host="var/ledger.sqlite")
    with pytest.raises(ConfigurationError, match="absolute"):
        stores.ledger_url()

    set_conn(monkeypatch, stores.LEDGER_CONN_ID, conn_type="mysql", host="h")
    with pytest.raises(ConfigurationError, match="postgres"):
        stores.ledger_url()


# --- provider metadata ----------------------------------------------------------------------------------


def test_provider_info_matches_airflows_runtime_schema_and_the_hooks() -> None:
    import airflow
    import jsonschema

    from marketkeeper.airflow.provider import get_provider_info

    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    # Airflow refuses a provider whose package-name differs from its distribution name.
    assert info["package-name"] == "marketkeeper"
    by_type = {entry["connection-type"]: entry for entry in info["connection-types"]}
    for hook in (InfluxDBHook, RedisHook):
        entry = by_type[hook.conn_type]
        assert entry["hook-class-name"] == f"{hook.__module__}.{hook.__qualname__}"
        assert entry["hook-name"] == hook.hook_name
    assert by_type["marketkeeper_influxdb"]["conn-fields"]["token"]["schema"]["format"] == "password"
