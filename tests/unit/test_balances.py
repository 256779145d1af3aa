"""Accounts parsed from Connection fields, ccxt balance answers, settlement currencies and paper balances."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from marketkeeper.balances import (
    Account,
    AccountKind,
    Balance,
    paper_balances,
    parse_ccxt_balance,
    settlement_currency,
    with_zeroed,
)
from marketkeeper.errors import ConfigurationError

D = Decimal
USER = uuid.uuid4()
BOT = uuid.uuid4()


def test_exchange_account_from_connection_fields_keeps_secrets_out_of_its_repr() -> None:
    account = Account.from_connection_fields(
        "binance_main",
        login="the-key",
        password="the-secret",
        extra={
            "kind": "Exchange",
            "exchange": "Binance",
            "user_id": str(USER),
            "currencies": "btc, usdt",
            "passphrase": "the-phrase",
        },
    )

    assert (account.kind, account.exchange, account.user_id) == (AccountKind.EXCHANGE, "binance", USER)
    assert account.currencies == frozenset({"BTC", "USDT"})
    assert (account.api_key, account.secret, account.passphrase) == ("the-key", "the-secret", "the-phrase")
    assert not {"the-key", "the-secret", "the-phrase"} & set(repr(account).replace("'", " ").split())
    assert account.redact("x the-key y the-secret z?signature=abc&t=1") == "x *** y *** z?signature=***&t=1"


def test_paper_account_takes_starting_capital_as_json_text_or_an_object() -> None:
    for capital in ('{"usdt": "10000.5", "BTC": 1}', {"usdt": "10000.5", "BTC": 1}):
        account = Account.from_connection_fields(
            "paper", login=None, password=None, extra={"kind": "paper", "bot_id": str(BOT), "starting_capital": capital}
        )
        assert account.starting_capital == {"USDT": D("10000.5"), "BTC": D(1)}
        assert account.bot_id == BOT


@pytest.mark.parametrize(
    ("login", "password", "extra", "message"),
    [
        (None, None, {}, "'kind' must be 'exchange' or 'paper'"),
        (None, None, {"kind": "paper"}, "needs the extra 'bot_id'"),
        ("k", "s", {"kind": "exchange", "user_id": str(USER)}, "needs exchange"),
        (None, None, {"kind": "exchange", "exchange": "binance", "user_id": str(USER)}, "API key"),
        ("k", "s", {"kind": "exchange", "exchange": "binance", "user_id": "bob"}, "user_id must be a UUID"),
        (None, None, {"kind": "paper", "bot_id": str(BOT), "starting_capital": "{oops"}, "not valid JSON"),
        (None, None, {"kind": "paper", "bot_id": str(BOT), "starting_capital": {"USDT": "lots"}}, "a number"),
        (None, None, {"kind": "paper", "bot_id": str(BOT), "starting_capital": {"USDT": "NaN"}}, "finite"),
    ],
)
def test_malformed_accounts_are_configuration_errors(
    login: str | None, password: str | None, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Account.from_connection_fields("acct", login=login, password=password, extra=extra)


def test_ccxt_balance_answers_become_exact_decimals() -> None:
    raw = {
        "info": {"ignored": True},
        "total": {"BTC": 0.30000000000000004, "ETH": 2.0, "SOL": None},
        "free": {"BTC": 0.1, "ETH": None, "SOL": None},
        "used": {"BTC": 0.2, "ETH": 0.5},
        "BTC": {"free": 0.1, "used": 0.2, "total": 0.3},
    }

    assert parse_ccxt_balance(raw) == [
        Balance("BTC", D("0.30000000000000004"), D("0.1"), D("0.2")),
        Balance("ETH", D("2.0"), D("1.5"), D("0.5")),  # free derived from total - used
    ]
    assert parse_ccxt_balance({"free": {"XRP": 5}}) == [Balance("XRP", D(5), D(5), D(0))]


@pytest.mark.parametrize(
    ("symbol", "currency"),
    [("BTC/USDT", "USDT"), ("ETH/BTC", "BTC"), ("BTC/USDT:USDT", "USDT"), ("BTC/USD:BTC", "BTC"),
     ("BTC/USDT:USDT-250328", "USDT")],
)  # fmt: skip
def test_settlement_currency(symbol: str, currency: str) -> None:
    assert settlement_currency(symbol) == currency


def test_a_symbol_without_a_quote_has_no_settlement_currency() -> None:
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        settlement_currency("BTCUSDT")


def test_paper_balances_are_capital_plus_pnl_minus_fees() -> None:
    balances = paper_balances(
        {"usdt": D(1000)},
        [("BTC/USDT", None, D("0.5")), ("BTC/USDT", D(20), D("0.5")), ("ETH/BTC", D("-0.01"), D("0.001"))],
    )

    assert balances == [Balance("BTC", D("-0.011"), D("-0.011")), Balance("USDT", D(1019), D(1019))]


def test_an_exchange_answer_keeps_non_zero_and_previously_held_currencies() -> None:
    answer = [Balance("BTC", D(0), D(0)), Balance("DOGE", D(0), D(0)), Balance("USDT", D(5), D(4), D(1))]

    assert with_zeroed(answer, {"BTC", "ETH"}) == [
        Balance("BTC", D(0), D(0)),  # held before and reported as zero
        Balance("ETH", D(0), D(0), D(0)),  # held before and gone from the answer
        Balance("USDT", D(5), D(4), D(1)),
    ]
    assert with_zeroed(answer, ()) == [Balance("USDT", D(5), D(4), D(1))]


def test_an_account_names_its_owner_or_bot_only_for_its_kind() -> None:
    exchange = Account.from_connection_fields(
        "ex", login="k", password="s", extra={"kind": "exchange", "exchange": "binance", "user_id": str(USER)}
    )
    paper = Account.from_connection_fields("pa", login=None, password=None, extra={"kind": "paper", "bot_id": str(BOT)})

    assert (exchange.exchange_owner(), paper.paper_bot()) == ((USER, "binance"), BOT)
    with pytest.raises(ConfigurationError, match="not an exchange one"):
        paper.exchange_owner()
    with pytest.raises(ConfigurationError, match="not a paper one"):
        exchange.paper_bot()
