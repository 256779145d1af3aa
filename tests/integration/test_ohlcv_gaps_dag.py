"""The ohlcv_gaps DAG (plan -> repair per market -> summary) run by ``airflow dags test`` against the real
PostgreSQL, InfluxDB and Redis."""

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
from marketkeeper.ledger import CandleGap, GapStatus, Market, create_ledger_engine, session_scope
from marketkeeper.services.policy import DEFAULT_HISTORY_DAYS
from marketkeeper.sources import SyntheticSource
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.test_ohlcv_ingest_dag import asset_events, candle_event, dag_env, dag_run_id, xcom_returns

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

EXCHANGE = "gapdag"
HOLED = SeriesKey.of(EXCHANGE, "BTC/USDT", "1m")
#: Declares no first_date, and nothing of it is stored.
FRESH = SeriesKey.of(EXCHANGE, "ETH/USDT", "1h")
MARKETS = {
    "markets": [
        {"exchange": EXCHANGE, "symbol": "BTC/USDT", "base_timeframe": "1m", "source": "synthetic:5"},
        {"exchange": EXCHANGE, "symbol": "ETH/USDT", "base_timeframe": "1h", "source": "synthetic:6"},
    ]
}
T0 = datetime(2024, 5, 6, tzinfo=UTC)


@pytest.fixture
def influxdb() -> Iterator[InfluxDBClient]:
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    client.drop_database()
    client.create_database()
    yield client
    client.drop_database()
    client.close()


@pytest.fixture
def env(pg_url: str, redis_url: str, redis_prefix: str) -> Iterator[dict[str, str]]:
    yield dag_env(pg_url, redis_url, redis_prefix, MARKETS)
    ledger = create_ledger_engine(pg_url)
    with session_scope(ledger) as session:
        session.execute(sa.delete(Market).where(Market.exchange == EXCHANGE))
        for table in ("quarantined_candles", "data_quality_runs"):
            session.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
    ledger.dispose()


def registry(pg_url: str, key: SeriesKey) -> dict[tuple[datetime, datetime], GapStatus]:
    ledger = create_ledger_engine(pg_url)
    with session_scope(ledger) as session:
        gaps = session.scalars(
            sa.select(CandleGap)
            .join(Market)
            .where(
                Market.exchange == key.exchange, Market.symbol == key.symbol, CandleGap.timeframe == str(key.timeframe)
            )
        ).all()
        statuses = {(g.start, g.end): g.status for g in gaps}
    ledger.dispose()
    return statuses


def test_a_run_over_a_window_fills_its_holes_records_them_and_announces_each_range(
    airflow_home: Path, env: dict[str, str], pg_url: str, influxdb: InfluxDBClient
) -> None:
    hours = [T0 + timedelta(hours=h) for h in range(15)]
    holes = [
        (hours[2], hours[3]),
        (hours[5] + timedelta(minutes=7), hours[5] + timedelta(minutes=8)),
        (hours[13], hours[13] + timedelta(minutes=30)),  # outside the run's window: left alone
    ]
    ledger = create_ledger_engine(pg_url)
    store = InfluxDBCandleStore(influxdb)
    ingest_range(HOLED, T0, hours[14], source=SyntheticSource(5, holes=holes), store=store, ledger=ledger)
    ledger.dispose()
    conf = {"markets": [str(HOLED)], "start": T0.isoformat(), "end": hours[12].isoformat()}

    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_gaps", "-c", json.dumps(conf))
    assert "state=success" in result.stdout + result.stderr
    assert store.count(HOLED, T0, hours[12]) == 12 * 60
    assert store.count(HOLED, hours[12], hours[14]) == 120 - 30
    assert registry(pg_url, HOLED) == {holes[0]: GapStatus.FILLED, holes[1]: GapStatus.FILLED}
    run_id = dag_run_id(result)
    assert asset_events(airflow_home, run_id) == [
        candle_event(HOLED, *holes[0], 60, "backfill"),
        candle_event(HOLED, *holes[1], 1, "backfill"),
    ]
    [[summary]] = xcom_returns(airflow_home, run_id, "repair")  # one batch of one market
    assert {k: summary[k] for k in ("label", "window_start", "window_end", "origin")} == {
        "label": str(HOLED),
        "window_start": T0.isoformat(),
        "window_end": hours[12].isoformat(),
        "origin": "requested start",
    }
    assert (summary["gaps_attempted"], summary["filled"], summary["written"], summary["failed"]) == (2, 2, 61, 0)
    assert summary["missing_after"] == 0
    assert xcom_returns(airflow_home, run_id, "summary") == [
        {"markets": 1, "gaps_attempted": 2, "filled": 2, "written": 61, "failed": 0, "missing_after": 0}
    ]


def test_a_market_without_first_date_or_candles_is_checked_over_the_default_horizon_and_says_so(
    airflow_home: Path, env: dict[str, str], influxdb: InfluxDBClient
) -> None:
    tf = FRESH.timeframe
    store = InfluxDBCandleStore(influxdb)
    assert store.first_open_time(FRESH) is None
    before = datetime.now(UTC)
    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_gaps", "-c", json.dumps({"markets": [str(FRESH)]}))
    after = datetime.now(UTC)
    output = result.stdout + result.stderr
    assert "state=success" in output

    run_id = dag_run_id(result)
    [[summary]] = xcom_returns(airflow_home, run_id, "repair")  # one batch of one market
    origin = f"default horizon ({DEFAULT_HISTORY_DAYS} days: no first_date, nothing stored)"
    assert summary["origin"] == origin
    assert f"from {origin}" in output  # the summary task's log line says where the window started
    start, end = (datetime.fromisoformat(summary[k]) for k in ("window_start", "window_end"))
    horizon = timedelta(days=DEFAULT_HISTORY_DAYS)
    assert tf.ceil(before - horizon) <= start <= tf.ceil(after - horizon)
    assert tf.floor(before) <= end <= tf.floor(after)
    expected = tf.count(start, end)
    assert expected >= DEFAULT_HISTORY_DAYS * 24 - 1
    assert (summary["gaps_attempted"], summary["filled"], summary["written"]) == (1, 1, expected)
    assert summary["missing_after"] == 0
    assert store.count(FRESH, start, end) == expected
    assert asset_events(airflow_home, run_id) == [candle_event(FRESH, start, end, expected, "backfill")]
