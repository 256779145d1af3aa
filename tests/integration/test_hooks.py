"""The hooks and the stores_check DAG against the real InfluxDB, Redis and PostgreSQL (test databases only).

The DAG runs through ``scripts/airflow.sh`` in a temporary AIRFLOW_HOME, so a user's ``.airflow`` is never
touched; the servers must be up (``make services``), or these tests fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import redis

from marketkeeper.errors import StoreUnavailableError
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

# Airflow writes under AIRFLOW_HOME as soon as it is imported: use a throwaway directory, never ~/airflow.
os.environ.setdefault("MARKETKEEPER_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="marketkeeper-airflow-"))
os.environ["AIRFLOW_HOME"] = os.environ["MARKETKEEPER_TEST_AIRFLOW_HOME"]

from marketkeeper.airflow import stores
from marketkeeper.airflow.hooks import InfluxDBHook, RedisHook

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CONN_ENV = {
    "ledger": "AIRFLOW_CONN_MARKETKEEPER_LEDGER",
    "influxdb": "AIRFLOW_CONN_MARKETKEEPER_INFLUXDB_DEFAULT",
    "redis": "AIRFLOW_CONN_MARKETKEEPER_REDIS_DEFAULT",
}


def influxdb_conn(url: str = INFLUXDB_TEST_URL) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return json.dumps(
        {
            "conn_type": "marketkeeper_influxdb",
            "host": parts.hostname,
            "port": parts.port,
            "schema": parts.scheme,
            "extra": {"database": INFLUXDB_TEST_DB, "timeout": 2},
        }
    )


def redis_conn(redis_url: str, prefix: str, *, password: str | None = None) -> str:
    parsed = redis.connection.parse_url(redis_url)
    return json.dumps(
        {
            "conn_type": "marketkeeper_redis",
            "host": parsed["host"],
            "port": parsed["port"],
            "password": password,
            "extra": {"db": parsed.get("db", 0), "prefix": prefix},
        }
    )


@pytest.fixture(autouse=True)
def only_test_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CONN_ENV.values():
        monkeypatch.delenv(name, raising=False)


def test_influxdb_hook_pings_the_real_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV["influxdb"], influxdb_conn())
    hook = InfluxDBHook()
    client = hook.get_conn()
    try:
        info = client.ping()
    finally:
        client.close()
    assert info.version and info.version != "unknown"
    ok, message = hook.test_connection()
    assert ok, message
    assert info.version in message


def test_redis_hook_pings_and_writes_under_its_prefix_and_db(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str
) -> None:
    monkeypatch.setenv(CONN_ENV["redis"], redis_conn(redis_url, redis_prefix))
    hook = RedisHook()
    with hook.get_conn() as client:
        assert client.ping().version
        client.raw.set(client.key("hook", "probe"), b"1")
    # Read back with a plain client on the test DB: the hook used the connection's db and prefix.
    plain = redis.Redis.from_url(redis_url)
    try:
        assert plain.get(f"{redis_prefix}hook:probe") == b"1"
    finally:
        plain.close()
    ok, message = hook.test_connection()
    assert ok, message


def test_a_provider_redis_connection_pings_the_real_server(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str
) -> None:
    parsed = redis.connection.parse_url(redis_url)
    conn = {"conn_type": "redis", "host": parsed["host"], "port": parsed["port"], "extra": {"db": parsed["db"]}}
    monkeypatch.setenv(
        "AIRFLOW_CONN_MK_PLAIN_REDIS", json.dumps({**conn, "extra": {**conn["extra"], "prefix": redis_prefix}})
    )
    hook = RedisHook("mk_plain_redis")
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith("Redis ") and " answered in " in message
    with hook.get_conn() as client:
        client.raw.set(client.key("plain", "probe"), b"2")
        assert client.raw.connection_pool.connection_kwargs["db"] == parsed["db"]
    plain = redis.Redis.from_url(redis_url)
    try:
        assert plain.get(f"{redis_prefix}plain:probe") == b"2"
    finally:
        plain.close()


def test_test_connection_reports_a_dead_server_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on localhost: nothing listens there, the refusal is immediate.
    monkeypatch.setenv(CONN_ENV["redis"], redis_conn("redis://127.0.0.1:1/15", "mktest:", password="hunter2"))
    ok, message = RedisHook().test_connection()
    assert not ok
    assert "127.0.0.1:1" in message
    assert "hunter2" not in message


def test_check_store_fails_naming_a_configured_store_that_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Every deployment has its ledger connection (the stores are configured as one set).
    monkeypatch.setenv(CONN_ENV["ledger"], json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "l.sqlite")}))
    monkeypatch.setenv(CONN_ENV["redis"], redis_conn("redis://127.0.0.1:1/15", "mktest:", password="hunter2"))
    with pytest.raises(StoreUnavailableError) as info:
        stores.check_store(stores.Store.REDIS)
    assert "redis" in str(info.value)
    assert "marketkeeper_redis_default" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_check_store_reaches_every_real_store(
    monkeypatch: pytest.MonkeyPatch, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    ledger = {
        "conn_type": "postgres",
        "host": url.host,
        "port": url.port,
        "login": url.username,
        "password": url.password,
        "schema": url.database,
    }
    monkeypatch.setenv(CONN_ENV["ledger"], json.dumps(ledger))
    monkeypatch.setenv(CONN_ENV["influxdb"], influxdb_conn())
    monkeypatch.setenv(CONN_ENV["redis"], redis_conn(redis_url, redis_prefix))
    for store in stores.Store:
        health = stores.check_store(store)
        assert (health.store, health.configured, health.ok) == (store.value, True, True)
        assert health.version


def test_providers_manager_discovers_marketkeeper() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()  # what the API server builds the connection form from
    assert "marketkeeper" in manager.providers
    hooks = ProvidersManagerTaskRuntime().hooks  # what Connection.get_hook() resolves through
    for hook in (InfluxDBHook, RedisHook):
        info = hooks[hook.conn_type]
        assert info is not None
        assert info.hook_class_name == f"{hook.__module__}.{hook.__qualname__}"
        assert info.connection_id_attribute_name == hook.conn_name_attr
        assert info.hook_name == hook.hook_name
        assert info.connection_testable
    widgets = manager.connection_form_widgets
    assert "extra__marketkeeper_influxdb__token" in widgets
    assert widgets["extra__marketkeeper_influxdb__token"].is_sensitive
    assert "extra__marketkeeper_redis__prefix" in widgets
    behaviours = manager.field_behaviours
    assert behaviours["marketkeeper_influxdb"]["relabeling"]["schema"] == "Protocol"
    assert "schema" in behaviours["marketkeeper_redis"]["hidden_fields"]


# --- the stores_check DAG, end to end -------------------------------------------------------------------


def summary_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    lines: dict[str, str] = {}
    for line in (result.stdout + result.stderr).splitlines():
        if "stores_check.py" in line:
            for store in ("ledger", "influxdb", "redis"):
                if f"] {store} " in line:
                    lines[store] = line
    return lines


def test_stores_check_dag_succeeds_against_the_real_servers(
    airflow_home: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    store_env: dict[str, Any] = {
        "DATABASE_URL": pg_url,
        "INFLUXDB_URL": INFLUXDB_TEST_URL,
        "INFLUXDB_BUCKET": INFLUXDB_TEST_DB,
        "REDIS_URL": redis_url,
    }
    result = run_airflow(airflow_home, store_env, "dags", "test", "stores_check")
    assert "state=success" in result.stdout + result.stderr
    lines = summary_lines(result)
    assert set(lines) == {"ledger", "influxdb", "redis"}
    assert all(" ok " in line for line in lines.values()), lines
    assert "postgresql" in lines["ledger"]


def test_stores_check_dag_skips_what_is_not_configured(airflow_home: Path) -> None:
    result = run_airflow(airflow_home, {}, "dags", "test", "stores_check")
    assert "state=success" in result.stdout + result.stderr
    lines = summary_lines(result)
    assert " ok " in lines["ledger"] and "sqlite" in lines["ledger"]  # the embedded ledger is always there
    assert "not configured" in lines["influxdb"]
    assert "not configured" in lines["redis"]
