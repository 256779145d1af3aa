"""What the market-data API raises: typed errors a bot can catch, each naming what exists instead."""

from __future__ import annotations

from collections.abc import Sequence

from marketkeeper.errors import MarketkeeperError

__all__ = ["MarketDataError", "SignalValidationError", "UnknownMarketError", "UnknownTimeframeError"]


class MarketDataError(MarketkeeperError):
    """A request the market-data API cannot answer as asked (the message says why)."""


class UnknownMarketError(MarketDataError, LookupError):
    """No declared market has this exchange and symbol.

    :ivar known: the declared markets, ``exchange:symbol``.
    """

    def __init__(self, exchange: str, symbol: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) if known else "none"
        super().__init__(f"unknown market {exchange}:{symbol}; declared markets: {listed}")
        self.exchange = exchange
        self.symbol = symbol
        self.known = tuple(known)


class UnknownTimeframeError(MarketDataError, LookupError):
    """The market has no stored series of this timeframe and none can be derived from one it has.

    :ivar known: the timeframes the market can serve (stored or derivable), shortest first.
    """

    def __init__(self, market: str, timeframe: str, known: Sequence[str], why: str = "") -> None:
        reason = f" ({why})" if why else ""
        super().__init__(
            f"market {market} cannot serve timeframe {timeframe!r}{reason}; it serves: {', '.join(known) or 'none'}"
        )
        self.market = market
        self.timeframe = timeframe
        self.known = tuple(known)


class SignalValidationError(MarketDataError, ValueError):
    """A trading signal that cannot be stored as given (the message names the field)."""
