"""The issue-11 DAGs run by ``airflow dags test`` against the real PostgreSQL, InfluxDB and Redis:
ohlcv_downsample's reconciliation pass computes the tiers of what ingestion left pending, ohlcv_retention
deletes what is past retention and safely downsampled, ledger_maintenance runs; and the adapter reads the
triggering Asset events' extras."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ingest import ingest_range
from marketkeeper.ledger import Market, create_ledger_engine, session_scope
from marketkeeper.sources import SyntheticSource
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from tests.airflow_cli import run_airflow
from tests.integration.test_ohlcv_ingest_dag import dag_env, dag_run_id, influxdb, xcom_returns  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

EXCHANGE = "tierdag"
KEY = SeriesKey.of(EXCHANGE, "BTC/USDT", "1m")
MARKETS = {
    "markets": [
        {
            "exchange": EXCHANGE,
            "symbol": "BTC/USDT",
            "source": "synthetic:5",
            "derived": ["1h", "1d"],
            "retention_days": {"1m": 1},
        }
    ]
}
T0 = datetime(2024, 5, 6, tzinfo=UTC)


@pytest.fixture
def env(pg_url: str, redis_url: str, redis_prefix: str) -> Iterator[dict[str, str]]:
    yield dag_env(pg_url, redis_url, redis_prefix, MARKETS)
    ledger = create_ledger_engine(pg_url)
    with session_scope(ledger) as session:
        session.execute(sa.delete(Market).where(Market.exchange == EXCHANGE))
        for table in ("quarantined_candles", "data_quality_runs", "pending_downsamples", "retention_horizons"):
            session.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
    ledger.dispose()


def test_reconciliation_run_then_retention_then_maintenance(
    airflow_home: Path,
    env: dict[str, str],
    pg_url: str,
    influxdb: InfluxDBClient,  # noqa: F811 (the fixture)
) -> None:
    ledger = create_ledger_engine(pg_url)
    store = InfluxDBCandleStore(influxdb)
    ingest_range(KEY, T0, T0 + timedelta(hours=3), source=SyntheticSource(5), store=store, ledger=ledger)
    ledger.dispose()

    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_downsample")
    assert "state=success" in result.stdout + result.stderr
    [[summary]] = xcom_returns(airflow_home, dag_run_id(result), "downsample")
    assert summary["tiers"] == {"1h": {"buckets": 3, "incomplete": 0}, "1d": {"buckets": 1, "incomplete": 1}}
    hours = store.read(SeriesKey.of(EXCHANGE, "BTC/USDT", "1h"), T0, T0 + timedelta(days=1))
    assert hours["source_count"].tolist() == [60, 60, 60]

    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_retention")
    assert "state=success" in result.stdout + result.stderr
    [report] = xcom_returns(airflow_home, dag_run_id(result), "apply")
    assert report["deleted"] == 180 and store.count(KEY, T0, T0 + timedelta(days=1)) == 0
    assert store.count(SeriesKey.of(EXCHANGE, "BTC/USDT", "1h"), T0, T0 + timedelta(days=1)) == 3

    result = run_airflow(airflow_home, env, "dags", "test", "ledger_maintenance")
    assert "state=success" in result.stdout + result.stderr


def test_the_adapter_reads_every_triggering_event_extra() -> None:
    from marketkeeper.airflow.downsample import event_extras

    extra = {"market": "binance:BTC/USDT", "timeframe": "1m", "start": "a", "end": "b"}
    context = {"triggering_asset_events": {"asset-1": [SimpleNamespace(extra=extra)], "asset-2": []}}
    assert event_extras(context) == [extra]
    assert event_extras({}) == []
