"""The markets declaration is validated entry by entry, and a mistake names its entry and field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.markets import DEFAULT_MARKETS_FILE, MarketConfigError, MarketSpec, load_markets
from marketkeeper.timeframes import Timeframe


def test_the_shipped_file_is_valid() -> None:
    markets = load_markets(DEFAULT_MARKETS_FILE)
    assert len(markets) >= 2
    btc = markets[0]
    assert (btc.exchange, btc.symbol, btc.base_timeframe, btc.first_date, btc.source, btc.active) == (
        "binance",
        "BTC/USDT",
        Timeframe.parse("1m"),
        date(2024, 1, 1),
        "ccxt",
        True,
    )
    assert btc.key == SeriesKey.of("binance", "BTC/USDT", "1m")
    assert btc.first_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert load_markets(str(DEFAULT_MARKETS_FILE)) == markets


def test_text_defaults_and_bare_list() -> None:
    markets = load_markets("- {exchange: Binance, symbol: SOL/USDT}\n")
    assert markets == [MarketSpec(exchange="binance", symbol="SOL/USDT")]
    assert markets[0].base_timeframe == Timeframe.parse("1m")
    assert markets[0].first_date is None and markets[0].first_time is None
    assert markets[0].source == "ccxt" and markets[0].active


def test_json_works_too_for_an_airflow_variable() -> None:
    text = '{"markets": [{"exchange": "kraken", "symbol": "BTC/USD", "timeframe": "1h", "source": "synthetic:7"}]}\n'
    (market,) = load_markets(text)
    assert market.base_timeframe == Timeframe.parse("1h") and market.source == "synthetic:7"
    assert market.model_dump(mode="json")["base_timeframe"] == "1h"


def test_errors_name_entry_index_and_field() -> None:
    text = """
markets:
  - {exchange: binance, symbol: BTC/USDT}
  - {exchange: binance, symbol: ETH/USDT, base_timeframe: 2m}
  - {exchange: binance, symbol: BTCUSDT, first_date: 2024-13-01}
  - {exchange: binance, symbol: XRP/USDT, source: csv, colour: red}
"""
    with pytest.raises(MarketConfigError) as info:
        load_markets(text)
    message = str(info.value)
    assert "5 problem(s)" in message
    assert "markets[1].base_timeframe: Value error, unknown timeframe '2m'" in message
    assert "markets[2].symbol: Value error, a symbol is ccxt's unified BASE/QUOTE" in message
    assert "markets[2].first_date:" in message
    assert "markets[3].source:" in message and "unknown source 'csv'" in message
    assert "markets[3].colour: Extra inputs are not permitted" in message
    assert "markets[0]" not in message
    assert isinstance(info.value, ConfigurationError)


def test_duplicates_identical_are_merged_conflicting_are_refused() -> None:
    same = "markets:\n  - {exchange: binance, symbol: BTC/USDT}\n  - {exchange: binance, symbol: BTC/USDT}\n"
    assert len(load_markets(same)) == 1
    conflicting = (
        "markets:\n  - {exchange: binance, symbol: BTC/USDT, first_date: 2024-01-01}\n"
        "  - {exchange: binance, symbol: BTC/USDT, first_date: 2023-01-01}\n"
    )
    with pytest.raises(MarketConfigError, match=r"markets\[1\]: duplicate of markets\[0\] \(binance BTC/USDT 1m\)"):
        load_markets(conflicting)
    # Another timeframe of the same symbol is another series.
    two = (
        "markets:\n  - {exchange: binance, symbol: BTC/USDT}\n"
        "  - {exchange: binance, symbol: BTC/USDT, timeframe: 1h}\n"
    )
    assert len(load_markets(two)) == 2


def test_malformed_documents() -> None:
    assert load_markets("") == []
    assert load_markets("markets: []\n") == []
    with pytest.raises(MarketConfigError, match="not valid YAML"):
        load_markets("markets: [\n")
    with pytest.raises(MarketConfigError, match="expected a 'markets:' list"):
        load_markets("markets: {exchange: binance}\n")
    with pytest.raises(MarketConfigError, match=r"markets\[0\]: expected a mapping"):
        load_markets("- binance BTC/USDT\n")
    with pytest.raises(MarketConfigError, match=r"markets\[0\]\.first_date: .*zero time"):
        load_markets("- {exchange: binance, symbol: BTC/USDT, first_date: 2024-01-01T10:00:00Z}\n")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MarketConfigError, match="cannot read markets file"):
        load_markets(tmp_path / "nope.yaml")
    with pytest.raises(MarketConfigError, match="cannot read markets file"):
        load_markets(str(tmp_path / "nope.yml"))


def test_specs_are_frozen() -> None:
    spec = MarketSpec(exchange="binance", symbol="BTC/USDT")
    with pytest.raises(ValueError, match="frozen"):
        spec.symbol = "ETH/USDT"
