"""The balance_snapshots and performance_rollups DAGs run by ``airflow dags test`` on the real PostgreSQL and
InfluxDB, with a paper account declared as an Airflow Connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import PerformanceMetrics, create_ledger_engine, migrate, session_scope
from tests.airflow_cli import run_airflow
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.ledger_accounts import Owners, open_owners

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

# After the DAGs' start_date: Airflow creates no task instances for a logical date before it.
DAY = date(2026, 11, 2)
NOON = datetime(2026, 11, 2, 12, tzinfo=UTC)
ONE_PM = NOON + timedelta(hours=1)


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Engine]:
    migrate.upgrade(pg_url)  # `make demo` does this with `marketkeeper db upgrade`
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def owners(ledger: Engine) -> Iterator[Owners]:
    yield from open_owners(ledger)


def _env(pg_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": pg_url, "INFLUXDB_URL": INFLUXDB_TEST_URL, "INFLUXDB_BUCKET": INFLUXDB_TEST_DB, **extra}


def test_hourly_paper_snapshot_and_a_rollup_of_history(
    airflow_home: Path, pg_url: str, owners: Owners, influxdb_client: InfluxDBClient
) -> None:
    user_id, bot_id = owners.bot(exchange="paper-dag", config={"quote_currency": "USDT"})
    owners.trade(bot_id, NOON - timedelta(hours=1), pnl="25", fee="1")
    owners.trade(bot_id, NOON + timedelta(minutes=30), pnl="-5", fee="1")
    owners.trade(bot_id, NOON + timedelta(hours=2), pnl="100", fee="1")  # after the interval
    account = {
        "conn_type": "marketkeeper_account",
        "extra": {"kind": "paper", "bot_id": str(bot_id), "starting_capital": {"USDT": "1000"}},
    }
    env = _env(
        pg_url,
        AIRFLOW_CONN_MK_PAPER_DAGTEST=json.dumps(account),
        AIRFLOW_VAR_MARKETKEEPER_BALANCE_ACCOUNTS=json.dumps(["mk_paper_dagtest"]),
    )

    # A run at 13:00 covers [12:00, 13:00): the snapshot is stamped 13:00 and counts the trades before it.
    snap = run_airflow(airflow_home, env, "dags", "test", "balance_snapshots", ONE_PM.isoformat())
    assert "state=success" in snap.stdout + snap.stderr
    one_pm = ONE_PM
    assert owners.snapshots(user_id) == [("paper-dag", "USDT", one_pm, Decimal(1018), Decimal(1018), Decimal(0))]
    (series,) = influxdb_client.query(
        'SELECT "total" FROM "balances" WHERE "user_id" = $user', params={"user": str(user_id)}, epoch="s"
    )
    assert series.values == [[int(one_pm.timestamp()), 1018.0]]

    conf = {"bots": [str(bot_id)], "start_date": str(DAY), "end_date": str(DAY + timedelta(days=1))}
    rolled = run_airflow(airflow_home, env, "dags", "test", "performance_rollups", "-c", json.dumps(conf))
    assert "state=success" in rolled.stdout + rolled.stderr
    with session_scope(owners.engine) as session:
        rows = session.execute(
            sa.select(PerformanceMetrics.metric_date, PerformanceMetrics.total_trades, PerformanceMetrics.total_pnl)
            .where(PerformanceMetrics.bot_id == bot_id)
            .order_by(PerformanceMetrics.metric_date)
        ).all()
    assert [tuple(r) for r in rows] == [(DAY, 3, Decimal(117)), (DAY + timedelta(days=1), 0, Decimal(0))]
    (perf,) = influxdb_client.query(
        'SELECT "total_trades" FROM "performance" WHERE "bot_id" = $bot', params={"bot": str(bot_id)}, epoch="s"
    )
    assert [row[1] for row in perf.values] == [3, 0]


def test_no_accounts_declared_is_a_successful_run(airflow_home: Path, pg_url: str, ledger: Engine) -> None:
    result = run_airflow(airflow_home, _env(pg_url), "dags", "test", "balance_snapshots", ONE_PM.isoformat())

    assert "state=success" in result.stdout + result.stderr
