"""Daily performance rollups on the real ledgers (PostgreSQL and SQLite) and InfluxDB, the demo seed and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from marketkeeper.demo_seed import DEMO_EXCHANGE, seed_paper_bot
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import BalanceSnapshot, PerformanceMetrics, Trade, session_scope
from marketkeeper.metrics import sharpe_ratio, sortino_ratio
from marketkeeper.repositories import unit_of_work
from marketkeeper.rollups import BotNotFoundError
from marketkeeper.services.rollups import rollup_bot
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.ledger_accounts import Owners, ledger_config, open_ledger, open_owners

pytestmark = pytest.mark.integration

D = Decimal
MAR_1, MAR_2, MAR_3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


def at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from open_ledger(request, tmp_path)


@pytest.fixture
def owners(ledger: Engine) -> Iterator[Owners]:
    yield from open_owners(ledger)


@pytest.fixture
def config(ledger: Engine) -> StoreConfig:
    return ledger_config(ledger)


def _rows(engine: Engine, bot_id: uuid.UUID) -> dict[date, PerformanceMetrics]:
    with session_scope(engine) as session:
        rows = session.scalars(sa.select(PerformanceMetrics).where(PerformanceMetrics.bot_id == bot_id)).all()
    return {row.metric_date: row for row in rows}


def _three_day_bot(owners: Owners) -> uuid.UUID:
    """Equity 1000 -> 1100 (Mar 1) -> flat (Mar 2, no snapshot) -> 990 (Mar 3); trades on Mar 1 and Mar 3."""
    user_id, bot_id = owners.bot(exchange="paper", config={"quote_currency": "USDT"})
    for stamp, total in (
        (at(MAR_1), "1000"),  # midnight: the close of Feb 29
        (at(MAR_1, 12), "1050"),
        (at(MAR_2), "1100"),  # the close of Mar 1
        (at(MAR_3, 6), "990"),
    ):
        owners.snapshot(user_id, "paper", "USDT", stamp, total)
    owners.snapshot(user_id, "paper", "BTC", at(MAR_2), "5")  # another currency: not part of the equity
    owners.snapshot(user_id, "binance", "USDT", at(MAR_2), "1")  # another account of the user: ignored
    owners.trade(bot_id, at(MAR_1, 1), pnl=None, fee="0.5")
    owners.trade(bot_id, at(MAR_1, 2), pnl="60", fee="1")
    owners.trade(bot_id, at(MAR_1, 3), pnl="-10", fee="1")
    owners.trade(bot_id, at(MAR_3, 5), pnl="-110", fee="0")
    return bot_id


def test_one_row_per_day_including_days_without_trades(ledger: Engine, config: StoreConfig, owners: Owners) -> None:
    bot_id = _three_day_bot(owners)

    rollups = rollup_bot(config, bot_id, date(2024, 2, 28), MAR_3).days

    rows = _rows(ledger, bot_id)
    assert sorted(rows) == [date(2024, 2, 28), date(2024, 2, 29), MAR_1, MAR_2, MAR_3]
    assert [r.metric_date for r in rollups] == sorted(rows)

    before = rows[date(2024, 2, 28)]  # before the first snapshot: no equity, no risk figures
    assert (before.total_trades, before.total_pnl, before.equity, before.sharpe_ratio) == (0, D(0), None, None)

    mar_1 = rows[MAR_1]
    assert (mar_1.total_trades, mar_1.winning_trades, mar_1.losing_trades, mar_1.win_rate) == (2, 1, 1, 0.5)
    assert mar_1.total_pnl == D("47.5")  # 60 - 10 - (0.5 + 1 + 1) fees
    assert (mar_1.gross_profit, mar_1.gross_loss, mar_1.total_fees) == (D(60), D(-10), D("2.5"))
    assert (mar_1.profit_factor, mar_1.expectancy) == (6.0, D("23.75"))  # net per closed trade
    assert (mar_1.equity, mar_1.equity_currency) == (D(1100), "USDT")
    assert mar_1.sharpe_ratio is None  # one return so far
    assert mar_1.max_drawdown == 0.0

    mar_2 = rows[MAR_2]  # no trades and no snapshot: a zero-return day, still a row
    assert (mar_2.total_trades, mar_2.winning_trades, mar_2.total_pnl, mar_2.win_rate) == (0, 0, D(0), 0.0)
    assert mar_2.profit_factor is None and mar_2.avg_win is None
    assert mar_2.equity == D(1100)
    assert mar_2.sharpe_ratio == pytest.approx(sharpe_ratio([0.1, 0.0]))

    mar_3 = rows[MAR_3]
    assert (mar_3.total_trades, mar_3.losing_trades, mar_3.total_pnl, mar_3.largest_loss) == (1, 1, D(-110), D(-110))
    assert mar_3.equity == D(990)
    assert mar_3.sharpe_ratio == pytest.approx(sharpe_ratio([0.1, 0.0, -0.1]))
    assert mar_3.sortino_ratio == pytest.approx(sortino_ratio([0.1, 0.0, -0.1]))
    assert mar_3.max_drawdown == pytest.approx(-0.1)  # 990 / 1100 - 1
    assert mar_3.calmar_ratio is not None and mar_3.calmar_ratio < 0


def test_rerunning_a_day_replaces_its_row(ledger: Engine, config: StoreConfig, owners: Owners) -> None:
    bot_id = _three_day_bot(owners)
    rollup_bot(config, bot_id, MAR_1, MAR_3)
    first = _rows(ledger, bot_id)

    rollup_bot(config, bot_id, MAR_1, MAR_3)
    again = _rows(ledger, bot_id)
    assert {d: (r.id, r.total_trades, r.total_pnl, r.sharpe_ratio) for d, r in again.items()} == {
        d: (r.id, r.total_trades, r.total_pnl, r.sharpe_ratio) for d, r in first.items()
    }

    owners.trade(bot_id, at(MAR_2, 9), pnl="5", fee="0.25")  # booked late
    rollup_bot(config, bot_id, MAR_2, MAR_2)

    after = _rows(ledger, bot_id)
    assert len(after) == 3
    assert (after[MAR_2].total_trades, after[MAR_2].winning_trades, after[MAR_2].total_pnl) == (1, 1, D("4.75"))
    assert after[MAR_2].id == first[MAR_2].id
    assert after[MAR_1].total_pnl == first[MAR_1].total_pnl


def test_the_risk_window_bounds_the_returns(config: StoreConfig, owners: Owners) -> None:
    bot_id = _three_day_bot(owners)

    (mar_3,) = rollup_bot(config, bot_id, MAR_3, MAR_3, window_days=1).days

    assert mar_3.risk.days == 1
    assert mar_3.risk.sharpe_ratio is None
    assert mar_3.risk.max_drawdown == pytest.approx(-0.1)

    (all_history,) = rollup_bot(config, bot_id, MAR_3, MAR_3, window_days=None).days
    assert all_history.risk.days == 3


def test_bots_are_found_by_id_or_unique_name(config: StoreConfig, owners: Owners) -> None:
    _, bot_id = owners.bot()
    with pytest.raises(BotNotFoundError, match="no bot has the id"):
        rollup_bot(config, uuid.uuid4(), MAR_1, MAR_1)
    with pytest.raises(BotNotFoundError, match="no bot has the name"):
        rollup_bot(config, "no-such-bot", MAR_1, MAR_1)

    (row,) = rollup_bot(config, str(bot_id), MAR_1, MAR_1).days
    assert (row.bot_id, row.stats.count, row.equity, row.equity_currency) == (bot_id, 0, None, None)
    (by_name,) = rollup_bot(config, row.bot_name, MAR_1, MAR_1).days
    assert by_name.bot_id == bot_id


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)
def test_rollups_also_go_to_influxdb(ledger: Engine, owners: Owners, influxdb_client: InfluxDBClient) -> None:
    bot_id = _three_day_bot(owners)

    config = ledger_config(ledger, influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB))
    report = rollup_bot(config, bot_id, MAR_1, MAR_3)
    rollup_bot(config, bot_id, MAR_1, MAR_3)  # overwrites, never duplicates

    assert report.influxdb_points == 3

    (series,) = influxdb_client.query(
        'SELECT "total_trades", "total_pnl", "max_drawdown", "equity" FROM "performance" WHERE "bot_id" = $bot',
        params={"bot": str(bot_id)},
        epoch="s",
    )
    assert series.values == [
        [int(at(MAR_1).timestamp()), 2, 47.5, 0.0, 1100.0],
        [int(at(MAR_2).timestamp()), 0, 0.0, 0.0, 1100.0],
        [int(at(MAR_3).timestamp()), 1, -110.0, pytest.approx(-0.1), 990.0],
    ]


# --- the demo bot ----------------------------------------------------------------------------------------


def test_demo_seed_is_idempotent_and_rolls_up(ledger: Engine, config: StoreConfig, owners: Owners) -> None:
    last = date(2024, 3, 10)

    with unit_of_work(ledger) as repos:
        first = seed_paper_bot(repos, n_trades=40, seed=3, last_day=last)
    owners.user_ids.append(first.user_id)
    with unit_of_work(ledger) as repos:  # a seeded bot keeps its own
        again = seed_paper_bot(repos, n_trades=999, seed=99, last_day=date(2025, 1, 1))

    assert (first.trades_added, first.trades_total) == (40, 40)
    assert (again.trades_added, again.trades_total, again.bot_id) == (0, 40, first.bot_id)
    assert (first.first_day, first.last_day) == (last - timedelta(days=6), last)
    with session_scope(ledger) as session:
        trades = session.scalar(sa.select(sa.func.count()).select_from(Trade).where(Trade.bot_id == first.bot_id))
        snapshots = session.scalars(
            sa.select(BalanceSnapshot.total_balance)
            .where(BalanceSnapshot.user_id == first.user_id, BalanceSnapshot.exchange == DEMO_EXCHANGE)
            .order_by(BalanceSnapshot.timestamp)
        ).all()
        pnl, fees = session.execute(
            sa.select(sa.func.count(Trade.pnl), sa.func.count(Trade.fee)).where(Trade.bot_id == first.bot_id)
        ).one()
    assert trades == 40 and (pnl, fees) == (20, 40)  # 20 round trips: P&L on the closing fill
    assert len(snapshots) == 7 * 24 + 1 == first.snapshots == again.snapshots  # hourly, from midnight

    rollups = rollup_bot(config, first.bot_id, first.first_day, first.last_day).days

    assert len(rollups) == 7
    assert sum(r.stats.count for r in rollups) == 20
    assert rollups[-1].equity == snapshots[-1]
    assert rollups[-1].risk.days == 7  # the first day's return is on the starting capital
    assert rollups[-1].risk.sharpe_ratio is not None


# --- the command line ------------------------------------------------------------------------------------


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "INFLUXDB_", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "marketkeeper", *args],
        env={**env, "MARKETKEEPER_HOME": str(home)},
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_seed_and_rollup_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _cli("db", "upgrade", home=home).returncode == 0

    seeded = _cli("demo-seed", "--trades", "60", home=home)
    assert seeded.returncode == 0, seeded.stderr
    assert "60 trades (60 new)" in seeded.stdout and "latest performance row:" in seeded.stdout
    again = _cli("demo-seed", "--trades", "60", home=home)
    assert "60 trades (0 new)" in again.stdout

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    rolled = _cli("rollup", "--bot", "demo-paper", "--start", str(yesterday - timedelta(days=1)), "--end",
                  str(yesterday), home=home)  # fmt: skip
    assert rolled.returncode == 0, rolled.stderr
    lines = rolled.stdout.splitlines()
    assert lines[0].startswith("bot demo-paper (") and "2 days" in lines[0]
    assert lines[1].split()[:4] == ["date", "trades", "wins", "losses"]
    assert [line.split()[0] for line in lines[2:]] == [str(yesterday - timedelta(days=1)), str(yesterday)]

    missing = _cli("rollup", "--bot", "nobody", "--start", "2024-01-01", "--end", "2024-01-01", home=home)
    assert missing.returncode == 1 and "no bot has the name 'nobody'" in missing.stderr
    backwards = _cli("rollup", "--bot", "demo-paper", "--start", "2024-01-02", "--end", "2024-01-01", home=home)
    assert backwards.returncode == 1 and "before it starts" in backwards.stderr
