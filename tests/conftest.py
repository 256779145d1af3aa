"""Shared fixtures: the real servers, each in a database or key space the tests own and clean up.

Tests never touch a user's data: PostgreSQL gets a ``marketkeeper_test`` database created and dropped here,
InfluxDB a ``marketkeeper_test`` database, Redis DB 15 under a ``mktest:`` prefix. ``make test`` starts the
servers (scripts/services.sh); a server that is down fails the tests that need it, never skips them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from marketkeeper.errors import StoreUnavailableError
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.redis_client import RedisClient

PG_ADMIN_URL = os.environ.get(
    "MARKETKEEPER_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"
)
# One database per pytest process, so two runs on one machine never drop each other's database.
PG_TEST_DB = os.environ.get("MARKETKEEPER_TEST_PG_DB", f"marketkeeper_test_{os.getpid()}")
REDIS_TEST_URL = os.environ.get("MARKETKEEPER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
INFLUXDB_TEST_URL = os.environ.get("MARKETKEEPER_TEST_INFLUXDB_URL", "http://127.0.0.1:8086")
INFLUXDB_TEST_DB = os.environ.get("MARKETKEEPER_TEST_INFLUXDB_DB", f"marketkeeper_test_{os.getpid()}")


def _recreate_pg_database(name: str) -> str:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} is down (run `make services`): {exc}")
    finally:
        admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of an empty ``marketkeeper_test`` PostgreSQL database, dropped after the session."""
    url = _recreate_pg_database(PG_TEST_DB)
    yield url
    _drop_pg_database(PG_TEST_DB)


@contextlib.contextmanager
def own_pg_ledger(suffix: str) -> Iterator[str]:
    """A migrated PostgreSQL ledger ``<session db>_<suffix>`` of one module's own, dropped afterwards: for
    figures that must hold only what the module wrote (the session's ledger holds every test's rows)."""
    from marketkeeper.ledger import migrate

    name = f"{PG_TEST_DB}_{suffix}"
    url = _recreate_pg_database(name)
    migrate.upgrade(url)
    yield url
    _drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_ledger(pg_url: str) -> str:
    """:func:`pg_url` migrated to the newest ledger schema (idempotent, once per session)."""
    from marketkeeper.ledger import migrate

    migrate.upgrade(pg_url)
    return pg_url


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """A migrated ledger of each backend: the session's PostgreSQL database, or a SQLite file of this test's own."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_ledger"))
    from marketkeeper.ledger import migrate

    url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'ledger.sqlite'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    """An engine on :func:`pg_url`, disposed afterwards."""
    from marketkeeper.ledger import create_ledger_engine

    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database of this test's own, for tests that migrate or drop schemas."""
    name = f"{PG_TEST_DB}_fresh"
    yield _recreate_pg_database(name)
    _drop_pg_database(name)


@pytest.fixture(scope="module")
def airflow_home() -> Iterator[Path]:
    """A migrated Airflow metadata DB of the test module's own (SQLite, in a temporary directory)."""
    from tests.airflow_cli import run_airflow

    with tempfile.TemporaryDirectory(prefix="marketkeeper-airflow-dagtest-") as home:
        run_airflow(Path(home), {}, "db", "migrate")
        run_airflow(Path(home), {}, "pools", "set", "exchange_api", "4", "exchange API calls")
        yield Path(home)


@pytest.fixture
def redis_url() -> str:
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own in the test Redis DB; every key under it is deleted afterwards."""
    prefix = f"mktest:{uuid.uuid4().hex[:8]}:"  # own per test, so concurrent runs never delete each other's keys
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is down (run `make services`): {exc}")
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[RedisClient]:
    """A namespaced client of the test Redis DB under :func:`redis_prefix`."""
    client = RedisClient(redis_url, prefix=redis_prefix)
    yield client
    client.close()


# --- InfluxDB (marketkeeper.influxdb) -------------------------------------------------------------------


@pytest.fixture
def influxdb_client() -> Iterator[InfluxDBClient]:
    """A client of an empty ``marketkeeper_test`` InfluxDB database, dropped after the test."""
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB, max_retries=1, backoff_factor=0.1)
    try:
        client.ping()
    except StoreUnavailableError as exc:
        client.close()
        pytest.fail(f"InfluxDB at {INFLUXDB_TEST_URL} is down (run `make services`): {exc}")
    client.drop_database()
    client.create_database()
    yield client
    client.drop_database()
    client.close()
