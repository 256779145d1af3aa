"""The ``candle_gaps`` rows of the gap registry (:mod:`marketkeeper.gaps.registry` owns their life cycle)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from marketkeeper.ledger.models import CandleGap, GapStatus, Market
from marketkeeper.repositories.base import Repository


class GapRepository(Repository[CandleGap]):
    """Gaps by market, timeframe and range."""

    model = CandleGap
    default_order = ("market_id", "timeframe", "start")

    def of_series(
        self,
        market_id: int,
        timeframe: str,
        statuses: Sequence[GapStatus],
        *,
        within: tuple[datetime, datetime] | None = None,
    ) -> builtins.list[CandleGap]:
        """The gaps of one series in ``statuses`` (overlapping ``within`` when given), by start."""
        statement = sa.select(CandleGap).where(
            CandleGap.market_id == market_id, CandleGap.timeframe == timeframe, CandleGap.status.in_(statuses)
        )
        if within is not None:
            statement = statement.where(CandleGap.start < within[1], CandleGap.end > within[0])
        return self._all(statement, order="start")

    def in_statuses(
        self,
        statuses: Sequence[GapStatus],
        *,
        market_id: int | None = None,
        timeframe: str | None = None,
        within: tuple[datetime, datetime] | None = None,
    ) -> builtins.list[CandleGap]:
        """Gaps in ``statuses``, optionally of one market and timeframe, overlapping ``within``."""
        statement = sa.select(CandleGap).where(CandleGap.status.in_(statuses))
        if market_id is not None:
            statement = statement.where(CandleGap.market_id == market_id)
        if timeframe is not None:
            statement = statement.where(CandleGap.timeframe == timeframe)
        if within is not None:
            statement = statement.where(CandleGap.start < within[1], CandleGap.end > within[0])
        return self._all(statement)

    def with_markets(
        self,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
        status: GapStatus | None = None,
    ) -> builtins.list[tuple[Market, CandleGap]]:
        """The registry, filtered, with each gap's market; ordered by market, timeframe and start."""
        statement = sa.select(Market, CandleGap).join(CandleGap, CandleGap.market_id == Market.id)
        if exchange is not None:
            statement = statement.where(Market.exchange == exchange)
        if symbol is not None:
            statement = statement.where(Market.symbol == symbol)
        if timeframe is not None:
            statement = statement.where(CandleGap.timeframe == timeframe)
        if status is not None:
            statement = statement.where(CandleGap.status == status)
        statement = statement.order_by(Market.exchange, Market.symbol, CandleGap.timeframe, CandleGap.start)
        return [(m, g) for m, g in self.session.execute(statement)]

    def add(self, gap: CandleGap) -> CandleGap:
        """Add a row built by the registry (its life-cycle fields set there)."""
        self.session.add(gap)
        self._flush("create")
        return gap

    def save(self) -> None:
        """Flush the registry's changes to loaded rows."""
        self._flush("update")
