"""The ohlcv_gaps DAG run by `airflow dags test` against the real PostgreSQL, InfluxDB and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ingest import ingest_range
from marketkeeper.ledger import CandleGap, GapStatus, Market, create_ledger_engine, migrate, session_scope
from marketkeeper.sources import SyntheticSource
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

KEY = SeriesKey.of("gapdag", "BTC/USDT", "1m")


@pytest.fixture
def influxdb() -> Iterator[InfluxDBClient]:
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    client.drop_database()
    client.create_database()
    yield client
    client.drop_database()
    client.close()


def test_the_daily_run_fills_every_hole_and_records_it(
    airflow_home: Path, pg_url: str, redis_url: str, influxdb: InfluxDBClient
) -> None:
    first_day = (datetime.now(UTC) - timedelta(days=1)).date()
    first = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    holes = [
        (first + timedelta(hours=2), first + timedelta(hours=3)),
        (first + timedelta(hours=5, minutes=7), first + timedelta(hours=5, minutes=8)),
    ]
    markets = {
        "markets": [
            {
                "exchange": KEY.exchange,
                "symbol": KEY.symbol,
                "base_timeframe": "1m",
                "source": "synthetic:5",
                "first_date": first_day.isoformat(),
            }
        ]
    }
    migrate.upgrade(pg_url)
    ledger = create_ledger_engine(pg_url)
    store = InfluxDBCandleStore(influxdb)
    seed_end = first + timedelta(hours=12)
    ingest_range(KEY, first, seed_end, source=SyntheticSource(5, holes=holes), store=store, ledger=ledger)
    env = {
        "DATABASE_URL": pg_url,
        "INFLUXDB_URL": INFLUXDB_TEST_URL,
        "INFLUXDB_BUCKET": INFLUXDB_TEST_DB,
        "REDIS_URL": redis_url,
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": json.dumps(markets),
    }
    try:
        result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_gaps")
        assert "state=success" in result.stdout + result.stderr
        assert store.count(KEY, first, seed_end) == 12 * 60
        with session_scope(ledger) as session:
            gaps = session.scalars(sa.select(CandleGap).join(Market).where(Market.exchange == KEY.exchange)).all()
            statuses = {(g.start, g.end): g.status for g in gaps}
        for hole in holes:
            assert statuses[hole] == GapStatus.FILLED
        assert all(status == GapStatus.FILLED for status in statuses.values())
    finally:
        with session_scope(ledger) as session:
            session.execute(sa.delete(Market).where(Market.exchange == KEY.exchange))
            session.execute(sa.text("DELETE FROM data_quality_runs WHERE exchange = :e"), {"e": KEY.exchange})
        ledger.dispose()
