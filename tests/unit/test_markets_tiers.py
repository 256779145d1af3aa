"""Derived tiers and retention in the markets declaration: sensible defaults, and a clear error for what cannot
work (a timeframe both fetched and derived, a tier the base cannot make, a finer timeframe kept longer)."""

from __future__ import annotations

import pytest

from marketkeeper.markets import DEFAULT_MARKETS_FILE, MarketConfigError, load_markets
from marketkeeper.timeframes import Timeframe


def spellings(tiers: tuple[Timeframe, ...]) -> list[str]:
    return [str(tf) for tf in tiers]


def test_a_1m_market_derives_the_default_set_and_keeps_everything_forever() -> None:
    (market,) = load_markets("- {exchange: binance, symbol: BTC/USDT}\n")
    assert spellings(market.tiers) == ["5m", "15m", "1h", "4h", "1d", "1w", "1M"]
    assert market.retention_days == {}
    assert str(market.tier_key("1h")) == "binance:BTC/USDT:1h"


def test_the_default_set_is_what_the_base_can_make() -> None:
    (hourly,) = load_markets("- {exchange: kraken, symbol: BTC/USD, timeframe: 1h}\n")
    assert spellings(hourly.tiers) == ["4h", "1d", "1w", "1M"]
    (weekly,) = load_markets("- {exchange: kraken, symbol: BTC/USD, timeframe: 1w}\n")
    assert weekly.tiers == ()  # a month is no whole number of weeks


def test_declared_tiers_are_sorted_and_an_empty_list_means_none() -> None:
    (market,) = load_markets("- {exchange: binance, symbol: BTC/USDT, derived: [1d, 1h]}\n")
    assert spellings(market.tiers) == ["1h", "1d"]
    (none,) = load_markets("- {exchange: binance, symbol: BTC/USDT, derived: []}\n")
    assert none.tiers == ()


def test_the_default_set_leaves_out_a_timeframe_another_entry_fetches() -> None:
    fine, hourly = load_markets(
        "- {exchange: binance, symbol: BTC/USDT}\n- {exchange: binance, symbol: BTC/USDT, timeframe: 1h}\n"
    )
    assert spellings(fine.tiers) == ["5m", "15m", "4h", "1d", "1w", "1M"]
    assert spellings(hourly.tiers) == ["4h", "1d", "1w", "1M"]


def test_a_timeframe_declared_both_fetched_and_derived_is_an_error() -> None:
    text = (
        "- {exchange: binance, symbol: BTC/USDT, derived: [1h, 4h]}\n"
        "- {exchange: binance, symbol: BTC/USDT, timeframe: 1h, derived: []}\n"
    )
    with pytest.raises(MarketConfigError, match=r"markets\[0\]\.derived: 1h of binance BTC/USDT is also fetched"):
        load_markets(text)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{exchange: b, symbol: A/B, timeframe: 1h, derived: [5m]}", "5m cannot be computed from base 1h"),
        ("{exchange: b, symbol: A/B, derived: [1m]}", "1m cannot be computed from base 1m"),
        ("{exchange: b, symbol: A/B, derived: [1h, 1h]}", "derived lists a timeframe twice"),
        ("{exchange: b, symbol: A/B, retention_days: {3m: 9}}", "names '3m', which this market neither fetches"),
        ("{exchange: b, symbol: A/B, retention_days: {1m: 0}}", "greater than 0"),
        (
            "{exchange: b, symbol: A/B, derived: [5m, 1h], retention_days: {1m: 90, 5m: 700, 1h: 30}}",
            "keeps 1h for 30 days but 5m for 700 days",
        ),
    ],
)
def test_impossible_tiers_and_retention_are_refused_naming_the_entry(entry: str, message: str) -> None:
    with pytest.raises(MarketConfigError, match=r"markets\[0\]") as info:
        load_markets(f"- {entry}\n")
    assert message in str(info.value)


def test_retention_per_timeframe_round_trips_through_a_variable_dump() -> None:
    (market,) = load_markets(
        "- {exchange: binance, symbol: BTC/USDT, derived: [5m, 1h], retention_days: {1m: 90, 5m: 730}}\n"
    )
    dumped = market.model_dump(mode="json")
    assert dumped["derived"] == ["5m", "1h"] and dumped["retention_days"] == {"1m": 90, "5m": 730}
    assert type(market).model_validate(dumped) == market


def test_the_shipped_declaration_derives_the_default_tiers() -> None:
    btc = load_markets(DEFAULT_MARKETS_FILE)[0]
    assert spellings(btc.tiers) == ["5m", "15m", "1h", "4h", "1d", "1w", "1M"]
