"""Under a distributed executor, what lives in one machine's files (the SQLite ledger, a ``files:DIR`` source) is
refused with a one-line error naming the setting, unless the operator declares a shared filesystem.

The executor is read from Airflow's configuration when the check runs (``AIRFLOW__CORE__EXECUTOR`` here).
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from marketkeeper.errors import ConfigurationError

# Airflow writes under AIRFLOW_HOME as soon as it is imported: use a throwaway directory, never ~/airflow.
os.environ.setdefault("MARKETKEEPER_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="marketkeeper-airflow-"))
os.environ["AIRFLOW_HOME"] = os.environ["MARKETKEEPER_TEST_AIRFLOW_HOME"]

from marketkeeper.airflow import stores

pytestmark = pytest.mark.airflow

PG = "postgresql+psycopg://u:p@db.example:5432/ledger"
SQLITE = "sqlite:////srv/marketkeeper/ledger.sqlite"
CELERY = "CeleryExecutor"


@pytest.fixture(autouse=True)
def _no_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(stores.SHARED_FILESYSTEM_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")


def executor(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("LocalExecutor", None),
        ("CeleryExecutor", "CeleryExecutor"),
        ("airflow.providers.celery.executors.celery_executor.CeleryExecutor", "celery_executor.CeleryExecutor"),
        ("LocalExecutor, KubernetesExecutor", "KubernetesExecutor"),
        ("fast:airflow.executors.local_executor.LocalExecutor", None),
        ("remote:my_company.executors.RemoteExecutor", "RemoteExecutor"),
    ],
)
def test_the_executor_is_read_from_airflow_config(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    executor(monkeypatch, value)
    found = stores.distributed_executor()
    assert (found is None) if expected is None else (found is not None and found.endswith(expected))


def test_local_executor_accepts_sqlite_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    stores.check_distributable(SQLITE, ["files:/data/binance", "synthetic:1"])


def test_celery_accepts_postgres_with_ccxt_and_synthetic_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    executor(monkeypatch, CELERY)
    stores.check_distributable(PG, ["ccxt", "ccxt:kraken", "synthetic", "synthetic:7"])


def test_celery_refuses_the_sqlite_ledger_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    executor(monkeypatch, CELERY)
    with pytest.raises(ConfigurationError) as caught:
        stores.check_distributable(SQLITE)
    message = str(caught.value)
    assert "\n" not in message
    for part in ("/srv/marketkeeper/ledger.sqlite", "marketkeeper_ledger", "DATABASE_URL", "CeleryExecutor"):
        assert part in message
    assert f"{stores.SHARED_FILESYSTEM_ENV}=1" in message


def test_celery_refuses_a_files_source_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    executor(monkeypatch, CELERY)
    with pytest.raises(ConfigurationError, match=r"'files:/data/binance'.*CeleryExecutor.*MARKETKEEPER_SHARED_FILE"):
        stores.check_distributable(PG, ["synthetic:1", "files:/data/binance"])


@pytest.mark.parametrize("declared", ["1", "true", "YES", "on"])
def test_a_declared_shared_filesystem_accepts_both(monkeypatch: pytest.MonkeyPatch, declared: str) -> None:
    executor(monkeypatch, CELERY)
    monkeypatch.setenv(stores.SHARED_FILESYSTEM_ENV, declared)
    stores.check_distributable(SQLITE, ["files:/nfs/binance"])


@pytest.mark.parametrize("declared", ["", "0", "false", "no", "off"])
def test_a_declaration_of_no_still_refuses(monkeypatch: pytest.MonkeyPatch, declared: str) -> None:
    executor(monkeypatch, CELERY)
    monkeypatch.setenv(stores.SHARED_FILESYSTEM_ENV, declared)
    with pytest.raises(ConfigurationError, match="SQLite ledger"):
        stores.check_distributable(SQLITE)


def test_a_garbled_declaration_is_an_error_not_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    executor(monkeypatch, CELERY)
    monkeypatch.setenv(stores.SHARED_FILESYSTEM_ENV, "maybe")
    with pytest.raises(ConfigurationError, match=r"MARKETKEEPER_SHARED_FILESYSTEM must be 1 or 0, got 'maybe'"):
        stores.check_distributable(SQLITE)


def test_an_unknown_source_spelling_still_fails_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    executor(monkeypatch, CELERY)
    with pytest.raises(ConfigurationError, match="unknown source"):
        stores.check_distributable(PG, ["ftp:/x"])


def test_the_ledger_connection_itself_refuses_sqlite_under_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task resolves the ledger through :func:`stores.ledger_url`: no task opens a SQLite ledger that the
    worker's machine may not hold."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{stores.LEDGER_CONN_ID.upper()}",
        json.dumps({"conn_type": "sqlite", "host": "/srv/marketkeeper/ledger.sqlite"}),
    )
    assert stores.ledger_url() == "sqlite:////srv/marketkeeper/ledger.sqlite"  # LocalExecutor: fine
    executor(monkeypatch, CELERY)
    with pytest.raises(ConfigurationError, match=r"SQLite ledger /srv/marketkeeper/ledger.sqlite .*CeleryExecutor"):
        stores.ledger_url()
    monkeypatch.setenv(stores.SHARED_FILESYSTEM_ENV, "1")
    assert stores.ledger_url() == "sqlite:////srv/marketkeeper/ledger.sqlite"


def test_the_ledger_connection_accepts_postgres_under_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    executor(monkeypatch, CELERY)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{stores.LEDGER_CONN_ID.upper()}",
        json.dumps({"conn_type": "postgres", "host": "db.example", "login": "u", "password": "p", "schema": "mk"}),
    )
    assert stores.ledger_url().startswith("postgresql+psycopg://u:p@db.example")


def test_planning_a_run_refuses_a_files_source_under_celery(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """The check is wired where both candle DAGs plan their markets: the run fails once, before any batch."""
    from marketkeeper.airflow import ingestion
    from marketkeeper.store_set import StoreConfig

    declaration = "markets:\n  - {exchange: binance, symbol: BTC/USDT, source: 'files:/data/klines'}\n"
    monkeypatch.setattr(stores, "store_config", lambda: StoreConfig(ledger_url=PG))
    monkeypatch.setattr(ingestion, "declared_override", lambda: declaration)
    monkeypatch.setattr("marketkeeper.services.markets.sync_declared", lambda config, specs: None)
    executor(monkeypatch, CELERY)
    with pytest.raises(ConfigurationError, match=r"files:/data/klines.*MARKETKEEPER_SHARED_FILESYSTEM"):
        ingestion.plan_batches()
    monkeypatch.setenv(stores.SHARED_FILESYSTEM_ENV, "1")
    assert [b["markets"][0]["source"] for b in ingestion.plan_batches()] == ["files:/data/klines"]
