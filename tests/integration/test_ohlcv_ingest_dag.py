"""The ohlcv_ingest DAG run by ``airflow dags test`` against the real PostgreSQL, InfluxDB and Redis."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import DataQualityRun, Market, create_ledger_engine, migrate
from marketkeeper.redis_client import RedisClient
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

MARKETS = {
    "markets": [
        {"exchange": "binance", "symbol": "BTC/USDT", "source": "synthetic:1"},
        {"exchange": "binance", "symbol": "ETH/USDT", "source": "synthetic:2"},
        {"exchange": "kraken", "symbol": "XBT/EUR", "source": "synthetic:3", "active": False},
    ]
}
START, END = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 6, 3, tzinfo=UTC)
CONF = json.dumps({"start": START.isoformat(), "end": END.isoformat()})
BTC, ETH, XBT = (SeriesKey.of(m["exchange"], m["symbol"], "1m") for m in MARKETS["markets"])


@pytest.fixture
def influxdb() -> Iterator[InfluxDBClient]:
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    client.drop_database()
    client.create_database()
    yield client
    client.drop_database()
    client.close()


def dag_env(pg_url: str, redis_url: str, redis_prefix: str, markets: dict[str, Any]) -> dict[str, str]:
    """The environment of an ``airflow dags test``: the test stores as connections, ``markets`` as the Variable."""
    migrate.upgrade(pg_url)  # `make demo` does this with `marketkeeper db upgrade`
    redis_db = int(redis_url.rsplit("/", 1)[1])
    return {
        "DATABASE_URL": pg_url,
        "INFLUXDB_URL": INFLUXDB_TEST_URL,
        "INFLUXDB_BUCKET": INFLUXDB_TEST_DB,
        "AIRFLOW_CONN_MARKETKEEPER_REDIS_DEFAULT": json.dumps(
            {
                "conn_type": "marketkeeper_redis",
                "host": "127.0.0.1",
                "port": 6379,
                "extra": {"db": redis_db, "prefix": redis_prefix},
            }
        ),
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": json.dumps(markets),
    }


def dag_run_id(result: subprocess.CompletedProcess[str]) -> str:
    """The run id of the run ``airflow dags test`` made (from its last log line)."""
    found = re.findall(
        r"DagRun Finished: dag_id=\w+, logical_date=[^,]*, run_id=([^,]+),", result.stdout + result.stderr
    )
    assert found, (result.stdout + result.stderr)[-3000:]
    return found[-1]


def metadata_db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "airflow" / "airflow.db")  # the SQLite DB scripts/airflow.sh points Airflow at


def asset_events(home: Path, run_id: str) -> list[dict[str, Any]]:
    """The Asset events a DAG run emitted, from Airflow's metadata DB: asset name and uri, extra, emitting task
    and the alias each came through; sorted by name and start."""
    with contextlib.closing(metadata_db(home)) as db:
        rows = db.execute(
            "SELECT a.name, a.uri, e.extra, e.source_task_id, al.name FROM asset_event e "
            "JOIN asset a ON a.id = e.asset_id "
            "LEFT JOIN asset_alias_asset_event x ON x.event_id = e.id "
            "LEFT JOIN asset_alias al ON al.id = x.alias_id "
            "WHERE e.source_run_id = ?",
            (run_id,),
        ).fetchall()
    events = [
        {"name": name, "uri": uri, "extra": json.loads(extra), "task": task, "alias": alias}
        for name, uri, extra, task, alias in rows
    ]
    return sorted(events, key=lambda e: (e["name"], e["extra"].get("start", "")))


def xcom_returns(home: Path, run_id: str, task_id: str) -> list[Any]:
    """The return values of ``task_id``'s instances in a run, by map index."""
    with contextlib.closing(metadata_db(home)) as db:
        rows = db.execute(
            "SELECT value FROM xcom WHERE run_id = ? AND task_id = ? AND key = 'return_value' ORDER BY map_index",
            (run_id, task_id),
        ).fetchall()
    return [json.loads(value) for (value,) in rows]


def candle_event(key: SeriesKey, start: datetime, end: datetime, rows: int, origin: str) -> dict[str, Any]:
    """The Asset event the README documents for ``rows`` candles of ``key`` written over ``[start, end)``."""
    symbol = key.symbol.replace("/", "%2F")
    return {
        "name": f"candles:{key.exchange}:{key.symbol}:{key.timeframe}",
        "uri": f"marketkeeper://candles/{key.exchange}/{symbol}/{key.timeframe}",
        "extra": {
            "market": f"{key.exchange}:{key.symbol}",
            "timeframe": str(key.timeframe),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "rows": rows,
            "origin": origin,
        },
        "task": "ingest" if origin == "ingest" else "repair",
        "alias": "marketkeeper_candles",
    }


@pytest.fixture
def env(pg_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return dag_env(pg_url, redis_url, redis_prefix, MARKETS)


@pytest.fixture(autouse=True)
def _clean_ledger(pg_url: str) -> Iterator[None]:
    """Drop what the runs left in the ledger (markets, quality runs) for the exchanges of this module."""
    yield
    exchanges = {m["exchange"] for m in MARKETS["markets"] + SCHEDULED["markets"]}
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        if sa.inspect(conn).has_table("markets"):
            for table in ("quarantined_candles", "data_quality_runs", "markets"):
                conn.execute(
                    sa.text(f"DELETE FROM {table} WHERE exchange IN :e").bindparams(  # noqa: S608
                        sa.bindparam("e", expanding=True)
                    ),
                    {"e": sorted(exchanges)},
                )
    engine.dispose()


def test_a_manual_run_ingests_every_active_market_and_a_rerun_changes_nothing(
    airflow_home: Path, env: dict[str, str], pg_url: str, redis_url: str, redis_prefix: str, influxdb: InfluxDBClient
) -> None:
    first = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", CONF)
    assert "state=success" in first.stdout + first.stderr
    # One Asset event per market written, through the alias, with the extra downstream DAGs read.
    assert asset_events(airflow_home, dag_run_id(first)) == [
        candle_event(BTC, START, END, 180, "ingest"),
        candle_event(ETH, START, END, 180, "ingest"),
    ]

    store = InfluxDBCandleStore(influxdb)
    before = {key: store.read(key, START, END) for key in (BTC, ETH)}
    assert {key: len(frame) for key, frame in before.items()} == {BTC: 180, ETH: 180}
    assert set(store.list_series()) == {BTC, ETH}  # the inactive market is not ingested

    cache = CandleCache(RedisClient(redis_url, prefix=redis_prefix))
    latest = cache.latest(BTC)
    assert latest is not None and latest.open_time == datetime(2024, 5, 6, 2, 59, tzinfo=UTC)
    assert cache.watermark(ETH) == END

    engine = create_ledger_engine(pg_url)
    with engine.connect() as conn:
        markets = {(m.symbol, m.active) for m in conn.execute(sa.select(Market.symbol, Market.active))}
        runs = conn.scalar(sa.select(sa.func.count()).select_from(DataQualityRun))
    assert markets == {("BTC/USDT", True), ("ETH/USDT", True), ("XBT/EUR", False)}
    assert runs == 2

    second = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", CONF)
    assert "state=success" in second.stdout + second.stderr
    assert asset_events(airflow_home, dag_run_id(second)) == asset_events(airflow_home, dag_run_id(first))
    for key, frame in before.items():
        assert store.read(key, START, END).equals(frame)
    engine.dispose()


def test_an_unknown_market_in_the_form_fails_the_run_naming_it(airflow_home: Path, env: dict[str, str]) -> None:
    conf = json.dumps({"markets": ["binance:DOGE/USDT"], "start": START.isoformat(), "end": END.isoformat()})
    result = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", conf, check=False)
    assert result.returncode != 0
    assert "unknown market(s) binance:DOGE/USDT" in result.stdout + result.stderr


# A scheduled hourly run: its data interval [03:00, 04:00) closes sixty 1m candles and the 00:00 4h candle; the
# next one [04:00, 05:00) closes sixty 1m candles and no 4h candle. (The DAG starts 2026-11-01: Airflow creates
# no task instances for a logical date before a DAG's start_date.)
SCHEDULED = {
    "markets": [
        {"exchange": "dagsched", "symbol": "BTC/USDT", "base_timeframe": "1m", "source": "synthetic:4"},
        {"exchange": "dagsched", "symbol": "BTC/USDT", "base_timeframe": "4h", "source": "synthetic:4"},
    ]
}
ONE_MIN, FOUR_H = (SeriesKey.of("dagsched", "BTC/USDT", tf) for tf in ("1m", "4h"))
DAY = datetime(2026, 11, 2, tzinfo=UTC)


def test_scheduled_runs_ingest_the_candles_that_closed_in_their_interval_and_announce_exactly_those(
    airflow_home: Path, pg_url: str, redis_url: str, redis_prefix: str, influxdb: InfluxDBClient
) -> None:
    env = dag_env(pg_url, redis_url, redis_prefix, SCHEDULED)
    store = InfluxDBCandleStore(influxdb)
    hour = timedelta(hours=1)

    # A manual run of logical date 04:00 gets the hourly timetable's interval ending then: [03:00, 04:00).
    first = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", (DAY + 4 * hour).isoformat())
    output = first.stdout + first.stderr
    assert "state=success" in output
    assert "data_interval_start=2026-11-02 03:00:00+00:00, data_interval_end=2026-11-02 04:00:00+00:00" in output
    assert store.count(ONE_MIN, DAY, DAY + 5 * hour) == store.count(ONE_MIN, DAY + 3 * hour, DAY + 4 * hour) == 60
    four_h = store.read(FOUR_H, DAY - 4 * hour, DAY + 8 * hour)
    assert list(four_h["open_time"]) == [pd.Timestamp(DAY)]
    assert asset_events(airflow_home, dag_run_id(first)) == [
        candle_event(ONE_MIN, DAY + 3 * hour, DAY + 4 * hour, 60, "ingest"),
        candle_event(FOUR_H, DAY, DAY + 4 * hour, 1, "ingest"),
    ]

    # The next hour: no 4h candle closes, so the 4h series gets nothing and emits no event.
    second = run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", (DAY + 5 * hour).isoformat())
    assert "state=success" in second.stdout + second.stderr
    assert store.count(ONE_MIN, DAY, DAY + 5 * hour) == 120
    assert store.count(FOUR_H, DAY - 4 * hour, DAY + 8 * hour) == 1
    assert asset_events(airflow_home, dag_run_id(second)) == [
        candle_event(ONE_MIN, DAY + 4 * hour, DAY + 5 * hour, 60, "ingest"),
    ]
    # One batch (both series are on one exchange): its XCom lists each market's summary.
    [batch] = xcom_returns(airflow_home, dag_run_id(second), "ingest")
    summaries = {(s["market"], s["timeframe"]): s for s in batch}
    assert summaries[("dagsched:BTC/USDT", "4h")] == {
        "market": "dagsched:BTC/USDT",
        "timeframe": "4h",
        "start": (DAY + 4 * hour).isoformat(),
        "end": (DAY + 4 * hour).isoformat(),
        "fetched": 0,
        "written": 0,
        "quarantined": 0,
        "skipped": 0,
    }
