"""Which stored series answers a request: the declared markets, their stored timeframes, and the route of one
``(exchange, symbol, timeframe)``.

A market's *stored* timeframes are its declared base timeframes (fetched from a source) and its declared
derived tiers (written by downsampling). A request for a stored timeframe reads that series; any other
timeframe is resampled on the fly from the finest *fetched* base series that divides it
(:func:`marketkeeper.tiers.check_derivable`), with :func:`marketkeeper.tiers.resample_candles`, the function
the downsampling tiers are written with, so both give the same candles and completeness counts. Derived tiers
are never resampled again: their counts would be of tier candles, not of the base candles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from marketkeeper.candles import SeriesKey
from marketkeeper.marketdata.errors import UnknownMarketError, UnknownTimeframeError
from marketkeeper.markets import MarketSpec
from marketkeeper.tiers import check_derivable
from marketkeeper.timeframes import TIMEFRAMES, Timeframe, TimeframeError

__all__ = ["Market", "Route", "Router", "declared_tiers"]


def declared_tiers(spec: MarketSpec) -> tuple[Timeframe, ...]:
    """The derived tiers the declaration gives ``spec`` (none when the declaration has no tiers field)."""
    tiers = getattr(spec, "tiers", None) or ()
    found = []
    for tier in tiers:
        value = getattr(tier, "timeframe", tier)
        found.append(Timeframe.parse(value))
    return tuple(found)


@dataclass(frozen=True)
class Market:
    """One declared market (an exchange's symbol): its declarations, the timeframes stored and servable."""

    exchange: str
    symbol: str
    specs: tuple[MarketSpec, ...]
    #: fetched base timeframes, shortest first
    bases: tuple[Timeframe, ...]
    #: derived tiers written by downsampling, shortest first
    tiers: tuple[Timeframe, ...]
    #: every timeframe a request may name: stored, or derivable from a base
    servable: tuple[Timeframe, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    @property
    def stored(self) -> tuple[Timeframe, ...]:
        return _ordered({*self.bases, *self.tiers})

    @property
    def finest(self) -> SeriesKey:
        """The finest fetched series: where first/last candle and 30-day figures come from."""
        return SeriesKey(self.exchange, self.symbol, self.bases[0])

    def as_dict(self) -> dict[str, object]:
        dates = [spec.first_date for spec in self.specs if spec.first_date is not None]
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "base_timeframes": [str(tf) for tf in self.bases],
            "tiers": [str(tf) for tf in self.tiers],
            "timeframes": [str(tf) for tf in self.servable],
            "active": any(spec.active for spec in self.specs),
            "first_date": str(min(dates)) if dates else None,
        }


@dataclass(frozen=True)
class Route:
    """How a request is answered: ``source`` is the stored series read; when its timeframe differs from the
    request's, the candles are resampled to ``key.timeframe``. ``derived`` marks a stored derived tier."""

    key: SeriesKey
    source: SeriesKey
    derived: bool = False

    @property
    def resampled(self) -> bool:
        return self.source.timeframe != self.key.timeframe

    @property
    def kind(self) -> str:
        """``stored``, ``derived`` (a stored tier) or ``resampled:<base>`` (on the fly)."""
        if self.resampled:
            return f"resampled:{self.source.timeframe}"
        return "derived" if self.derived else "stored"


def _ordered(timeframes: Iterable[Timeframe]) -> tuple[Timeframe, ...]:
    return tuple(sorted(set(timeframes), key=lambda tf: TIMEFRAMES.index(tf.value)))


def _divides(base: Timeframe, target: Timeframe) -> bool:
    try:
        check_derivable(base, target)
    except TimeframeError:
        return False
    return True


class Router:
    """Routes over a markets declaration (every spec, active or not: history stays readable)."""

    def __init__(self, specs: Sequence[MarketSpec]) -> None:
        grouped: dict[tuple[str, str], list[MarketSpec]] = {}
        for spec in specs:
            grouped.setdefault((spec.exchange, spec.symbol), []).append(spec)
        self._markets: dict[tuple[str, str], Market] = {}
        for (exchange, symbol), group in grouped.items():
            bases = _ordered(spec.base_timeframe for spec in group)
            tiers = _ordered(tf for spec in group for tf in declared_tiers(spec) if tf not in bases)
            servable = _ordered(
                [
                    *bases,
                    *tiers,
                    *(tf for tf in map(Timeframe.parse, TIMEFRAMES) if any(_divides(b, tf) for b in bases)),
                ]
            )
            self._markets[(exchange, symbol)] = Market(exchange, symbol, tuple(group), bases, tiers, servable)

    @property
    def markets(self) -> list[Market]:
        return sorted(self._markets.values(), key=lambda m: (m.exchange, m.symbol))

    def market(self, exchange: str, symbol: str) -> Market:
        """The declared market; :class:`UnknownMarketError` names the declared ones otherwise."""
        found = self._markets.get((exchange, symbol))
        if found is None:
            raise UnknownMarketError(exchange, symbol, [m.label for m in self.markets])
        return found

    def route(self, exchange: str, symbol: str, timeframe: str | Timeframe) -> Route:
        """The route of a request (see the module docstring).

        :raises UnknownMarketError: the market is not declared.
        :raises UnknownTimeframeError: the timeframe is unknown, or neither stored nor derivable.
        """
        market = self.market(exchange, symbol)
        known = [str(tf) for tf in market.servable]
        try:
            tf = Timeframe.parse(timeframe)
        except TimeframeError as exc:
            raise UnknownTimeframeError(market.label, str(timeframe), known, "no such timeframe") from exc
        key = SeriesKey(exchange, symbol, tf)
        if tf in market.bases:
            return Route(key, key)
        if tf in market.tiers:
            return Route(key, key, derived=True)
        return self.resampled(market, tf)

    def resampled(self, market: Market, tf: Timeframe) -> Route:
        """The on-the-fly route of ``tf``: from the finest base of ``market`` that divides it.

        :raises UnknownTimeframeError: no base divides ``tf``.
        """
        key = SeriesKey(market.exchange, market.symbol, tf)
        for base in market.bases:  # shortest first: the finest base that divides the timeframe
            if _divides(base, tf):
                return Route(key, SeriesKey(market.exchange, market.symbol, base))
        known = [str(t) for t in market.servable]
        raise UnknownTimeframeError(
            market.label,
            str(tf),
            known,
            f"not stored, and no base timeframe ({', '.join(map(str, market.bases))}) divides it",
        )
