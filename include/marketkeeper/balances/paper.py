"""Paper accounts: a bot's balance derived from its trades, starting capital plus realized P&L minus fees,
each in the currency the trade settles in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from marketkeeper.balances.snapshot import Balance

_ZERO = Decimal(0)


def settlement_currency(symbol: str) -> str:
    """The currency a symbol's P&L and fees are paid in: the settle currency of ``BTC/USDT:USDT``, else the quote.

    :raises ValueError: the symbol is not ccxt's ``BASE/QUOTE[:SETTLE]``.
    """
    base, sep, rest = symbol.partition("/")
    if not sep or not base or not rest:
        raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE: its P&L currency is unknown")
    quote, _, settle = rest.partition(":")
    return (settle or quote).split("-")[0].upper()


def paper_balances(
    starting_capital: Mapping[str, Decimal], trades: Iterable[tuple[str, Decimal | None, Decimal]]
) -> list[Balance]:
    """A paper account's balances: starting capital plus realized P&L minus fees, per settlement currency.

    Everything is available (a paper account holds no orders on an exchange), so ``locked`` is 0.

    :param starting_capital: currency to amount before the first trade.
    :param trades: ``(symbol, realized P&L or None, fee)`` of every executed trade so far.
    """
    totals = {currency.upper(): Decimal(amount) for currency, amount in starting_capital.items()}
    for symbol, pnl, fee in trades:
        currency = settlement_currency(symbol)
        totals[currency] = totals.get(currency, _ZERO) + (pnl or _ZERO) - fee
    return [Balance(currency, total, total) for currency, total in sorted(totals.items())]
