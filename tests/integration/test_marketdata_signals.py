"""Trading signals in InfluxDB's ``signals`` measurement, and in the ledger's table when InfluxDB is not
configured (PostgreSQL and SQLite): validated, idempotent on market, source and time, hostile names safe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.marketdata import HistoricalDataProvider, Signal, SignalValidationError
from marketkeeper.markets import MarketSpec
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_URL

pytestmark = pytest.mark.integration

EXCHANGE = "sigtest"
T0 = datetime(2024, 5, 6, 12, 0, 0, 123456, tzinfo=UTC)
# Every character line protocol and InfluxQL treat specially, in each name a signal carries.
HOSTILE_SYMBOL = 'A,B= "x"{y}\'z'
HOSTILE_SOURCE = "bot'; DROP MEASUREMENT signals; --\\x"
SPEC = MarketSpec(exchange=EXCHANGE, symbol="BTC/USDT", base_timeframe="1m", source="synthetic")


@pytest.fixture(params=["influxdb", "postgresql", "sqlite"])
def provider(request: pytest.FixtureRequest) -> Iterator[HistoricalDataProvider]:
    """A provider whose signals go to InfluxDB, or (InfluxDB not configured) to a PostgreSQL or SQLite ledger."""
    influxdb = None
    if request.param == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'signals.sqlite'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("pg_ledger")
    if request.param == "influxdb":
        database = request.getfixturevalue("influxdb_client").database
        influxdb = lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=database)  # noqa: E731
    with HistoricalDataProvider(StoreConfig(ledger_url=url, influxdb=influxdb), markets=[SPEC]) as opened:
        yield opened
    engine = create_ledger_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM trading_signals WHERE exchange = :e"), {"e": EXCHANGE})
    engine.dispose()


def test_a_signal_reads_back_as_stored_and_storing_it_again_replaces_it(provider: HistoricalDataProvider) -> None:
    first = provider.store_signal(EXCHANGE, HOSTILE_SYMBOL, HOSTILE_SOURCE, "buy", 0.1 + 0.2, 0.75, T0)
    provider.store_signal(EXCHANGE, HOSTILE_SYMBOL, "other-bot", "sell", -1.5, 0.5, T0)
    again = provider.store_signal(EXCHANGE, HOSTILE_SYMBOL, HOSTILE_SOURCE, "hold", 7.0, 1.0, T0)
    later = provider.store_signal(EXCHANGE, HOSTILE_SYMBOL, HOSTILE_SOURCE, "sell", 2.0, 0.0, T0 + timedelta(hours=1))
    window = (T0 - timedelta(days=1), T0 + timedelta(days=1))
    found = provider.get_signals(EXCHANGE, HOSTILE_SYMBOL, *window)
    mine = provider.get_signals(EXCHANGE, HOSTILE_SYMBOL, *window, source=HOSTILE_SOURCE)
    sells = provider.get_signals(EXCHANGE, HOSTILE_SYMBOL, *window, kind="sell")
    assert first.value == 0.30000000000000004
    assert sorted(found, key=lambda s: (s.time, s.source)) == sorted(
        [again, later, Signal(EXCHANGE, HOSTILE_SYMBOL, "other-bot", "sell", -1.5, 0.5, T0)],
        key=lambda s: (s.time, s.source),
    )
    assert mine == [again, later]
    assert {s.source for s in sells} == {"other-bot", HOSTILE_SOURCE}
    assert provider.get_signals(EXCHANGE, HOSTILE_SYMBOL, *window, limit=1)[0].time == T0
    assert provider.get_signals(EXCHANGE, "ETH/USDT", *window) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"exchange": ""}, "exchange must be a non-empty string"),
        ({"symbol": "x" * 33}, "longer than 32"),
        ({"strategy_or_bot": "a\nb"}, "control character"),
        ({"strategy_or_bot": "ends\\"}, "backslash at the end"),
        ({"kind": 3}, "kind must be a non-empty string"),
        ({"value": float("nan")}, "value must be finite"),
        ({"value": True}, "value must be a number"),
        ({"confidence": 1.5}, "between 0 and 1"),
        ({"time": datetime(2024, 5, 6)}, "has no timezone"),  # noqa: DTZ001
        ({"time": datetime(1960, 1, 1, tzinfo=UTC)}, "outside the supported span"),
    ],
)
def test_a_bad_signal_is_refused_naming_the_field(provider: HistoricalDataProvider, change: dict, message: str) -> None:
    fields = {
        "exchange": EXCHANGE,
        "symbol": "BTC/USDT",
        "strategy_or_bot": "bot",
        "kind": "buy",
        "value": 1.0,
        "confidence": 0.5,
        "time": T0,
    } | change
    with pytest.raises(SignalValidationError, match=message):
        provider.store_signal(**fields)
    assert provider.get_signals(EXCHANGE, "BTC/USDT", T0 - timedelta(days=1), T0 + timedelta(days=1)) == []
