"""The rollup and demo services on the real PostgreSQL and InfluxDB, called as ``marketkeeper rollup``,
``marketkeeper demo-seed`` and the ``performance_rollups`` tasks call them: with a :class:`StoreConfig`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.repositories import unit_of_work
from marketkeeper.rollups import BotNotFoundError
from marketkeeper.services.demo import seed_demo
from marketkeeper.services.rollups import bot_ids, rollup_bot, rollup_bots
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.ledger_accounts import Owners, open_owners

pytestmark = pytest.mark.integration

D = Decimal
JUN_1, JUN_2 = date(2024, 6, 1), date(2024, 6, 2)


def at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Engine]:
    migrate.upgrade(pg_url)
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def owners(ledger: Engine) -> Iterator[Owners]:
    yield from open_owners(ledger)


def _bot(owners: Owners) -> uuid.UUID:
    user_id, bot_id = owners.bot(config={"quote_currency": "USDT"})
    owners.snapshot(user_id, "paper", "USDT", at(JUN_1), "1000")
    owners.snapshot(user_id, "paper", "USDT", at(JUN_2), "1010")  # the close of Jun 1
    owners.snapshot(user_id, "paper", "USDT", at(JUN_2, 18), "1020")
    owners.trade(bot_id, at(JUN_1, 3), pnl="12", fee="2")
    return bot_id


def test_rollup_bot_reports_its_days_and_serializes_for_xcom(pg_url: str, owners: Owners) -> None:
    bot_id = _bot(owners)

    report = rollup_bot(StoreConfig(ledger_url=pg_url), str(bot_id), JUN_1, JUN_2, window_days=30)

    assert (report.bot_id, report.first, report.last, report.window_days) == (bot_id, JUN_1, JUN_2, 30)
    assert [day.metric_date for day in report.days] == [JUN_1, JUN_2]
    assert (len(report), report[0].metric_date, [d.metric_date for d in report]) == (2, JUN_1, [JUN_1, JUN_2])
    assert (report.trades, report.latest.metric_date, report.influxdb_points) == (1, JUN_2, 0)
    payload = json.loads(json.dumps(report.as_dict()))
    assert {k: payload[k] for k in ("bot_id", "bot", "start", "end", "days", "trades", "window_days")} == {
        "bot_id": str(bot_id),
        "bot": report.bot_name,
        "start": "2024-06-01",
        "end": "2024-06-02",
        "days": 2,
        "trades": 1,
        "window_days": 30,
    }
    assert payload["latest"]["metric_date"] == "2024-06-02" and D(payload["latest"]["equity"]) == D(1020)
    with unit_of_work(owners.engine) as repos:
        rows = repos.performance.by_bot(bot_id)
        assert [(r.metric_date, r.total_trades, r.total_pnl) for r in rows] == [(JUN_1, 1, D(10)), (JUN_2, 0, D(0))]


def test_rollup_bots_checks_every_ref_before_writing(pg_url: str, owners: Owners) -> None:
    first, second = _bot(owners), _bot(owners)
    config = StoreConfig(ledger_url=pg_url)

    with pytest.raises(BotNotFoundError, match="no bot has the name 'ghost'"):
        rollup_bots(config, [str(first), "ghost"], JUN_1, JUN_2)
    with unit_of_work(owners.engine) as repos:
        assert repos.performance.by_bot(first) == []

    reports = rollup_bots(config, [str(first), f" {second} ", ""], JUN_1, JUN_2)
    assert [r.bot_id for r in reports] == [first, second]
    assert bot_ids(config, [str(second)]) == [str(second)]


def test_a_name_shared_by_two_users_must_be_given_as_an_id(pg_url: str, owners: Owners) -> None:
    name = f"twin-{uuid.uuid4().hex[:8]}"
    with unit_of_work(owners.engine) as repos:
        for _ in range(2):
            user = repos.users.get(owners.user())
            repos.bots.create(user_id=user.id, name=name, strategy_type="static", exchange="paper")

    with pytest.raises(BotNotFoundError, match="2 bots \\(of different users\\) have the name"):
        rollup_bot(StoreConfig(ledger_url=pg_url), name, JUN_1, JUN_1)


def test_an_empty_selection_rolls_up_every_bot_oldest_first(fresh_pg_url: str) -> None:
    migrate.upgrade(fresh_pg_url)
    engine = create_ledger_engine(fresh_pg_url)
    try:
        owners = Owners(engine)
        made = [owners.bot()[1] for _ in range(3)]
        config = StoreConfig(ledger_url=fresh_pg_url)

        assert bot_ids(config) == [str(bot_id) for bot_id in made]
        reports = rollup_bots(config, [], JUN_1, JUN_1, window_days=None)
        assert [r.bot_id for r in reports] == made
        assert all(r.window_days is None and len(r.days) == 1 for r in reports)
    finally:
        engine.dispose()


def test_rollup_points_go_through_the_configs_influxdb(
    pg_url: str, owners: Owners, influxdb_client: InfluxDBClient
) -> None:
    bot_id = _bot(owners)
    config = StoreConfig(
        ledger_url=pg_url, influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    )

    report = rollup_bot(config, bot_id, JUN_1, JUN_2)

    assert report.influxdb_points == 2
    (series,) = influxdb_client.query(
        'SELECT "total_trades", "equity" FROM "performance" WHERE "bot_id" = $bot',
        params={"bot": str(bot_id)},
        epoch="s",
    )
    assert series.values == [[int(at(JUN_1).timestamp()), 1, 1010.0], [int(at(JUN_2).timestamp()), 0, 1020.0]]


def test_seed_demo_seeds_rolls_up_and_reports_the_latest_row(fresh_pg_url: str) -> None:
    migrate.upgrade(fresh_pg_url)
    config = StoreConfig(ledger_url=fresh_pg_url)
    last = date(2024, 4, 10)

    seeded, latest = seed_demo(config, trades=40, seed=5, last_day=last)
    again = seed_demo(config, trades=999, seed=1)

    assert (seeded.trades_added, seeded.trades_total, seeded.snapshots) == (40, 40, 7 * 24 + 1)
    assert (seeded.first_day, seeded.last_day) == (last - timedelta(days=6), last)
    assert (again.seeded.bot_id, again.seeded.trades_added, again.seeded.trades_total) == (seeded.bot_id, 0, 40)
    assert latest["metric_date"] == last and latest["bot_id"] == seeded.bot_id
    assert latest["equity_currency"] == "USDT" and latest["sharpe_ratio"] is not None
    # Everything the command prints is there.
    for column in ("total_trades", "winning_trades", "losing_trades", "win_rate", "total_pnl", "equity",
                   "sortino_ratio", "calmar_ratio", "max_drawdown", "profit_factor", "expectancy", "avg_win",
                   "avg_loss", "largest_win", "largest_loss", "total_fees"):  # fmt: skip
        assert column in latest
    assert again.latest == latest

    with pytest.raises(ValueError, match="at least 2"):
        seed_demo(config, trades=1)
