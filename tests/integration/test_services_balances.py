"""The balance snapshot service on the real PostgreSQL and InfluxDB, called as the DAG and any other adapter
call it: with a :class:`StoreConfig`, its own stores and its own unit of work."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from marketkeeper.balances import Account, AccountKind, Balance, BalanceError
from marketkeeper.errors import ConfigurationError
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.services.balances import snapshot_account
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.ledger_accounts import Owners, open_owners

pytestmark = pytest.mark.integration

D = Decimal
AT = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Engine]:
    migrate.upgrade(pg_url)
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def owners(ledger: Engine) -> Iterator[Owners]:
    yield from open_owners(ledger)


def _paper(bot_id: uuid.UUID, **extra: object) -> Account:
    return Account.from_connection_fields(
        "paper_svc",
        login=None,
        password=None,
        extra={"kind": "paper", "bot_id": str(bot_id), "starting_capital": {"USDT": "500"}, **extra},
    )


class StaticExchange:
    id = "kraken"

    def __init__(self, answer: dict[str, dict[str, float]]) -> None:
        self.answer = answer

    def fetch_balance(self, params: object = None) -> dict[str, dict[str, float]]:
        return self.answer


def test_a_paper_snapshot_reports_what_it_recorded(pg_url: str, owners: Owners) -> None:
    user_id, bot_id = owners.bot(exchange="paper-svc")
    owners.trade(bot_id, AT - timedelta(minutes=5), pnl="20", fee="0.5")

    report = snapshot_account(StoreConfig(ledger_url=pg_url), _paper(bot_id), AT)

    assert report.balances == (Balance("USDT", D("519.5"), D("519.5"), D(0)),)
    assert report.influxdb_points == 0  # InfluxDB not configured
    payload = json.loads(json.dumps(report.as_dict()))
    assert {currency: D(total) for currency, total in payload.pop("balances").items()} == {"USDT": D("519.5")}
    assert payload == {
        "account": "paper_svc",
        "kind": "paper",
        "user_id": str(user_id),
        "exchange": "paper-svc",
        "timestamp": AT.isoformat(),
        "influxdb_points": 0,
    }
    assert owners.snapshots(user_id) == [("paper-svc", "USDT", AT, D("519.5"), D("519.5"), D(0))]


def test_the_instant_is_stored_in_utc_and_a_naive_one_is_refused(pg_url: str, owners: Owners) -> None:
    user_id, bot_id = owners.bot()
    config = StoreConfig(ledger_url=pg_url)
    report = snapshot_account(config, _paper(bot_id), AT.astimezone(timezone(timedelta(hours=2))))

    assert report.timestamp == AT and report.timestamp.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        snapshot_account(config, _paper(bot_id), AT.replace(tzinfo=None))
    assert [row[2] for row in owners.snapshots(user_id)] == [AT]


def test_a_paper_account_naming_another_owner_is_a_configuration_error(pg_url: str, owners: Owners) -> None:
    user_id, bot_id = owners.bot()
    stranger = owners.user()

    with pytest.raises(ConfigurationError, match="is not the owner"):
        snapshot_account(StoreConfig(ledger_url=pg_url), _paper(bot_id, user_id=str(stranger)), AT)
    assert owners.snapshots(user_id) == [] and owners.snapshots(stranger) == []


def test_an_exchange_account_of_an_unknown_user_fails_naming_it(pg_url: str) -> None:
    nobody = uuid.uuid4()
    account = Account.from_connection_fields(
        "kraken_main", login="k", password="s", extra={"kind": "exchange", "exchange": "kraken", "user_id": str(nobody)}
    )

    with pytest.raises(BalanceError, match=f"user {nobody} does not exist"):
        snapshot_account(
            StoreConfig(ledger_url=pg_url),
            account,
            datetime.now(UTC),
            exchange_client=StaticExchange({"total": {"BTC": 1.0}}),
        )


def test_influxdb_points_go_through_the_configs_client(
    pg_url: str, owners: Owners, influxdb_client: InfluxDBClient
) -> None:
    user_id = owners.user()
    account = Account.from_connection_fields(
        "kraken_main",
        login="k",
        password="s",
        extra={"kind": "exchange", "exchange": "kraken", "user_id": str(user_id)},
    )
    made: list[InfluxDBClient] = []

    def client() -> InfluxDBClient:
        made.append(InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB))
        return made[-1]

    at = datetime.now(UTC).replace(microsecond=0)
    exchange = StaticExchange({"total": {"BTC": 0.5, "ETH": 2.0}, "free": {"BTC": 0.5, "ETH": 1.5}})
    report = snapshot_account(StoreConfig(ledger_url=pg_url, influxdb=client), account, at, exchange_client=exchange)

    assert report.influxdb_points == 2
    assert made  # the service built its own client from the config
    series = influxdb_client.query(
        'SELECT "total", "locked" FROM "balances" WHERE "user_id" = $user GROUP BY "currency"',
        params={"user": str(user_id)},
        epoch="s",
    )
    assert {s.tags["currency"]: s.values for s in series} == {
        "BTC": [[int(at.timestamp()), 0.5, 0.0]],
        "ETH": [[int(at.timestamp()), 2.0, 0.5]],
    }
    assert report.kind is AccountKind.EXCHANGE
