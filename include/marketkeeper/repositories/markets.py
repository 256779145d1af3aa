"""The ``markets`` table: the declared markets kept in step with their declaration, and get-or-create of a
series' row (gaps and quality runs reference a market, even one nobody declared)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from marketkeeper.ledger.models import Market
from marketkeeper.repositories.base import Repository

if TYPE_CHECKING:
    from marketkeeper.candles import SeriesKey
    from marketkeeper.markets import MarketSpec


@dataclass(frozen=True)
class SyncReport:
    """How a sync changed the table."""

    added: int
    updated: int
    deactivated: int


class MarketRepository(Repository[Market]):
    """Markets by exchange, symbol and base timeframe (their natural key)."""

    model = Market
    default_order = ("exchange", "symbol", "base_timeframe")

    def find(self, key: SeriesKey) -> Market | None:
        """The row of ``key``'s market, or ``None`` when it was never declared nor backfilled."""
        statement = sa.select(Market).where(
            Market.exchange == key.exchange, Market.symbol == key.symbol, Market.base_timeframe == str(key.timeframe)
        )
        return self.session.scalars(statement).one_or_none()

    def get_or_create(self, key: SeriesKey, *, source: str = "ccxt") -> Market:
        """The row of ``key``'s market; a series nobody declared gets an *inactive* row, so that scheduled
        ingestion does not start keeping it."""
        market = self.find(key)
        if market is None:
            market = self.create(
                exchange=key.exchange,
                symbol=key.symbol,
                base_timeframe=str(key.timeframe),
                source=source,
                active=False,
            )
        return market

    def active(self, *, exchange: str | None = None, timeframe: str | None = None) -> builtins.list[Market]:
        """Active markets, by exchange and symbol."""
        statement = sa.select(Market).where(Market.active.is_(True))
        if exchange is not None:
            statement = statement.where(Market.exchange == exchange)
        if timeframe is not None:
            statement = statement.where(Market.base_timeframe == timeframe)
        return self._all(statement)

    def sync(self, specs: Sequence[MarketSpec]) -> SyncReport:
        """Insert new markets, update changed ones, deactivate markets no longer declared (never delete:
        their history stays)."""
        existing = {(m.exchange, m.symbol, m.base_timeframe): m for m in self.session.scalars(sa.select(Market))}
        added = updated = deactivated = 0
        declared = set()
        for spec in specs:
            natural = (spec.exchange, spec.symbol, str(spec.base_timeframe))
            declared.add(natural)
            wanted = {"first_date": spec.first_date, "source": spec.source, "active": spec.active}
            market = existing.get(natural)
            if market is None:
                self.session.add(
                    Market(exchange=spec.exchange, symbol=spec.symbol, base_timeframe=natural[2], **wanted)
                )
                added += 1
            elif any(getattr(market, name) != value for name, value in wanted.items()):
                for name, value in wanted.items():
                    setattr(market, name, value)
                updated += 1
        for natural, market in existing.items():
            if natural not in declared and market.active:
                market.active = False
                deactivated += 1
        self._flush("sync")
        return SyncReport(added=added, updated=updated, deactivated=deactivated)
