"""Balance snapshots on the real ledgers (PostgreSQL and SQLite) and InfluxDB, through the service the
``balance_snapshots`` DAG calls: paper and exchange accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
from sqlalchemy.engine import Engine

from marketkeeper.balances import Account, AccountKind, BalanceError, BalanceFetchError
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import TradeStatus
from marketkeeper.services.balances import snapshot_account
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.ledger_accounts import Owners, ledger_config, open_ledger, open_owners

pytestmark = pytest.mark.integration

D = Decimal
HOUR = timedelta(hours=1)
API_KEY = "key-AbC123"
API_SECRET = "s3cret-XyZ789"


class FakeBalanceExchange:
    """A ccxt exchange answering ``fetch_balance`` with queued answers (or raising queued ccxt errors)."""

    def __init__(self, *answers: Mapping[str, Any] | BaseException, id: str = "binance") -> None:
        self.id = id
        self.answers = list(answers)
        self.calls = 0

    def fetch_balance(self, params: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from open_ledger(request, tmp_path)


@pytest.fixture
def owners(ledger: Engine) -> Iterator[Owners]:
    yield from open_owners(ledger)


@pytest.fixture
def config(ledger: Engine) -> StoreConfig:
    return ledger_config(ledger)


def _paper(bot_id: uuid.UUID, capital: Mapping[str, str] | None = None) -> Account:
    return Account.from_connection_fields(
        "paper_test",
        login=None,
        password=None,
        extra={"kind": "paper", "bot_id": str(bot_id), "starting_capital": capital or {"USDT": "10000"}},
    )


def _exchange(user_id: uuid.UUID) -> Account:
    return Account.from_connection_fields(
        "binance_main",
        login=API_KEY,
        password=API_SECRET,
        extra={"kind": "exchange", "exchange": "binance", "user_id": str(user_id)},
    )


def _recent(minutes_ago: int = 0) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)


# --- paper accounts --------------------------------------------------------------------------------------


def test_paper_snapshot_is_capital_plus_pnl_minus_fees_per_settlement_currency(
    config: StoreConfig, owners: Owners
) -> None:
    user_id, bot_id = owners.bot(exchange="paper-grid")
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    owners.trade(bot_id, at - 3 * HOUR, pnl=None, fee="1.5")  # an opening fill: its fee counts
    owners.trade(bot_id, at - 2 * HOUR, pnl="40", fee="1.5")
    owners.trade(bot_id, at - HOUR, pnl="-0.01", fee="0.0001", symbol="ETH/BTC")  # P&L in BTC
    owners.trade(bot_id, at - HOUR, pnl="5", fee="0", symbol="BTC/USDT:USDT")  # a swap settles in USDT
    owners.trade(bot_id, at - HOUR, pnl="999", status=TradeStatus.CANCELLED)  # never executed
    owners.trade(bot_id, at, pnl="1000")  # belongs to the next interval

    report = snapshot_account(config, _paper(bot_id), at)

    assert (report.user_id, report.exchange, report.timestamp) == (user_id, "paper-grid", at)
    assert owners.snapshots(user_id) == [
        ("paper-grid", "BTC", at, D("-0.0101"), D("-0.0101"), D(0)),
        ("paper-grid", "USDT", at, D("10042"), D("10042"), D(0)),
    ]


def test_rerunning_a_paper_snapshot_replaces_that_instant(config: StoreConfig, owners: Owners) -> None:
    user_id, bot_id = owners.bot()
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    owners.trade(bot_id, at - HOUR, pnl="10", fee="1")
    snapshot_account(config, _paper(bot_id), at - HOUR)  # an earlier instant, left alone
    snapshot_account(config, _paper(bot_id), at)
    first = owners.snapshots(user_id)

    snapshot_account(config, _paper(bot_id), at)
    assert owners.snapshots(user_id) == first  # exactly as running it once

    owners.trade(bot_id, at - 2 * HOUR, pnl="-4", fee="0")  # a late-booked trade, then a re-run
    snapshot_account(config, _paper(bot_id), at)

    assert owners.snapshots(user_id) == [
        ("paper", "USDT", at - HOUR, D(10_000), D(10_000), D(0)),
        ("paper", "USDT", at, D(10_005), D(10_005), D(0)),
    ]


def test_paper_account_of_a_missing_bot_fails_naming_it(config: StoreConfig) -> None:
    missing = uuid.uuid4()
    with pytest.raises(BalanceError, match=str(missing)):
        snapshot_account(config, _paper(missing), datetime(2024, 3, 1, tzinfo=UTC))


# --- exchange accounts (a fake ccxt exchange: no live exchange is reachable) ------------------------------


def test_exchange_snapshot_records_total_free_used_and_zeroes_what_was_held(
    config: StoreConfig, owners: Owners
) -> None:
    user_id = owners.user()
    first_at, second_at = _recent(30), _recent(0)
    fake = FakeBalanceExchange(
        {
            "total": {"BTC": 0.5, "USDT": 1200.25, "DOGE": 0.0, "XRP": None},
            "free": {"BTC": 0.4, "USDT": 1200.25, "DOGE": 0.0},
            "used": {"BTC": 0.1, "USDT": 0.0, "DOGE": 0.0},
        },
        {"total": {"USDT": 3100.0}, "free": {"USDT": 3000.0}, "used": {}},  # BTC sold since
    )

    report = snapshot_account(config, _exchange(user_id), first_at, exchange_client=fake)
    snapshot_account(config, _exchange(user_id), second_at, exchange_client=fake)

    assert [b.currency for b in report.balances] == ["BTC", "USDT"]  # zero balances are not recorded
    assert owners.snapshots(user_id) == [
        ("binance", "BTC", first_at, D("0.5"), D("0.4"), D("0.1")),
        ("binance", "USDT", first_at, D("1200.25"), D("1200.25"), D(0)),
        # BTC was held an hour ago and is gone: recorded as zero, not left at its stale 0.5.
        ("binance", "BTC", second_at, D(0), D(0), D(0)),
        ("binance", "USDT", second_at, D(3100), D(3000), D(100)),
    ]


def test_rerunning_an_exchange_snapshot_replaces_it(config: StoreConfig, owners: Owners) -> None:
    user_id = owners.user()
    at = _recent()
    fake = FakeBalanceExchange(
        {"total": {"BTC": 1.0, "ETH": 2.0}, "free": {"BTC": 1.0, "ETH": 2.0}, "used": {}},
        {"total": {"BTC": 1.5}, "free": {"BTC": 1.5}, "used": {}},
    )

    snapshot_account(config, _exchange(user_id), at, exchange_client=fake)
    snapshot_account(config, _exchange(user_id), at, exchange_client=fake)

    assert owners.snapshots(user_id) == [("binance", "BTC", at, D("1.5"), D("1.5"), D(0))]


def test_exchange_errors_are_typed_and_never_carry_the_keys(config: StoreConfig, owners: Owners) -> None:
    user_id = owners.user()
    leak = ccxt.AuthenticationError(
        f'binance GET https://api.binance.com/api/v3/account?timestamp=1&signature=deadbeef {{"key": "{API_KEY}"}}'
    )
    fake = FakeBalanceExchange(leak)

    with pytest.raises(BalanceFetchError) as caught:
        snapshot_account(config, _exchange(user_id), _recent(), exchange_client=fake)

    message = str(caught.value)
    assert "binance_main" in message and "AuthenticationError" in message
    assert API_KEY not in message and "deadbeef" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert owners.snapshots(user_id) == []


def test_an_exchange_account_cannot_be_backfilled(config: StoreConfig, owners: Owners) -> None:
    user_id = owners.user()
    fake = FakeBalanceExchange({"total": {"BTC": 1.0}})

    with pytest.raises(BalanceError, match="present balances only"):
        snapshot_account(config, _exchange(user_id), _recent(180), exchange_client=fake)
    assert fake.calls == 0


def test_currencies_filter_keeps_only_the_listed_ones(config: StoreConfig, owners: Owners) -> None:
    user_id = owners.user()
    account = Account.from_connection_fields(
        "only_btc",
        login=API_KEY,
        password=API_SECRET,
        extra={"kind": "exchange", "exchange": "binance", "user_id": str(user_id), "currencies": "btc"},
    )
    fake = FakeBalanceExchange({"total": {"BTC": 1.0, "ETH": 2.0}})

    snapshot_account(config, account, _recent(), exchange_client=fake)

    assert [row[1] for row in owners.snapshots(user_id)] == ["BTC"]


# --- InfluxDB ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)
def test_snapshot_also_goes_to_influxdb_and_a_rerun_overwrites_it(
    ledger: Engine, owners: Owners, influxdb_client: InfluxDBClient
) -> None:
    influx_config = ledger_config(ledger, influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB))
    user_id, bot_id = owners.bot()
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    owners.trade(bot_id, at - HOUR, pnl="12.5", fee="0.5")

    report = snapshot_account(influx_config, _paper(bot_id), at)
    snapshot_account(influx_config, _paper(bot_id), at)

    assert report.influxdb_points == 1
    series = influxdb_client.query(
        'SELECT "total", "available", "locked" FROM "balances" WHERE "user_id" = $user GROUP BY *',
        params={"user": str(user_id)},
        epoch="s",
    )
    assert len(series) == 1
    assert series[0].tags == {
        "account": "paper_test",
        "currency": "USDT",
        "exchange": "paper",
        "kind": AccountKind.PAPER.value,
        "user_id": str(user_id),
    }
    assert series[0].values == [[int(at.timestamp()), 10_012.0, 10_012.0, 0.0]]
