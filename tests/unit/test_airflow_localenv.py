"""scripts/airflow.sh points Airflow at the CLI's stores: settings become AIRFLOW_CONN_* JSON in the shell."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from marketkeeper.airflow import localenv
from marketkeeper.settings import Settings

# Airflow writes under AIRFLOW_HOME as soon as it is imported: use a throwaway directory, never ~/airflow.
os.environ.setdefault("MARKETKEEPER_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="marketkeeper-airflow-"))
os.environ["AIRFLOW_HOME"] = os.environ["MARKETKEEPER_TEST_AIRFLOW_HOME"]

NASTY = "p@ss:w/rd%#?&x y'\""


def exported(lines: list[str]) -> dict[str, str]:
    """What ``eval`` of the export lines leaves in the environment, read back the way a shell would."""
    result = {}
    for line in lines:
        words = shlex.split(line)
        assert words[0] == "export"
        name, _, value = words[1].partition("=")
        result[name] = value
    return result


def settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_embedded_ledger_is_a_sqlite_connection_to_the_settings_file(tmp_path: Path) -> None:
    conf = settings(marketkeeper_home=tmp_path)
    env = exported(localenv.export_lines(conf, environ={}))
    assert set(env) == {localenv.LEDGER_ENV}  # no InfluxDB or Redis: those stay "not configured"
    assert json.loads(env[localenv.LEDGER_ENV]) == {
        "conn_type": "sqlite",
        "host": str(tmp_path / "ledger.sqlite"),
    }


@pytest.mark.airflow
def test_urls_round_trip_through_the_shell_into_the_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    from marketkeeper.airflow import stores
    from marketkeeper.airflow.hooks import InfluxDBHook, RedisHook

    quoted = quote(NASTY, safe="")
    conf = settings(
        database_url=f"postgresql+asyncpg://ledger:{quoted}@db.example:5433/mk?sslmode=require",
        redis_url=f"rediss://:{quoted}@cache.example:6380/4",
        influxdb_url="https://influx.example:8087",
        influxdb_token=NASTY,
        influxdb_bucket="candles",
    )
    env = exported(localenv.export_lines(conf, environ={}))
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    ledger = make_url(stores.ledger_url())
    assert (ledger.drivername, ledger.host, ledger.port, ledger.password, ledger.database) == (
        "postgresql+psycopg",
        "db.example",
        5433,
        NASTY,
        "mk",
    )
    assert ledger.query == {"sslmode": "require"}

    influx = InfluxDBHook().client_kwargs()
    assert (influx["url"], influx["token"], influx["database"]) == (
        "https://influx.example:8087",
        NASTY,
        "candles",
    )

    import redis

    parsed = redis.connection.parse_url(RedisHook().client_kwargs()["url"])
    assert (parsed["host"], parsed["port"], parsed["db"], parsed["password"]) == (
        "cache.example",
        6380,
        4,
        NASTY,
    )


def test_a_connection_the_user_already_exported_wins(tmp_path: Path) -> None:
    conf = settings(marketkeeper_home=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    lines = localenv.export_lines(conf, environ={localenv.LEDGER_ENV: "postgres://mine"})
    assert set(exported(lines)) == {localenv.REDIS_ENV}


def test_a_bad_redis_url_fails_without_echoing_it() -> None:
    with pytest.raises(localenv.ConfigurationError) as info:
        localenv.redis_connection(settings(redis_url="http://:hunter2@cache:6379"))
    assert "hunter2" not in str(info.value)


def test_the_module_prints_lines_bash_can_eval(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "DATABASE_URL", "REDIS_URL"))},
        "MARKETKEEPER_HOME": str(tmp_path),
        "REDIS_URL": f"redis://:{quote(NASTY, safe='')}@h:1/0",
    }
    env.pop("INFLUXDB_URL", None)
    script = f'eval "$({shlex.quote(sys.executable)} -m marketkeeper.airflow.localenv)"; '
    script += "printenv AIRFLOW_CONN_MARKETKEEPER_REDIS_DEFAULT"
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["password"] == NASTY
