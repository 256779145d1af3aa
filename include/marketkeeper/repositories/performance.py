"""Performance metrics: a bot's daily rows over a range of days."""

from __future__ import annotations

import builtins
from datetime import date

import sqlalchemy as sa

from marketkeeper.ledger.models import BotInstance, PerformanceMetrics
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.validation import RecordId, date_range


class PerformanceMetricsRepository(Repository[PerformanceMetrics]):
    """Daily performance rows, one per bot and UTC day, oldest day first."""

    model = PerformanceMetrics
    default_order = ("metric_date",)
    non_negative_fields = frozenset({"total_trades", "winning_trades", "losing_trades"})

    def by_bot(
        self, bot_id: RecordId, *, start: date | None = None, end: date | None = None
    ) -> builtins.list[PerformanceMetrics]:
        """The bot's rows for the days ``start`` to ``end``, both included (days, unlike times, are inclusive).

        :raises NotFoundError: the bot does not exist.
        :raises ValidationError: a bound is not a date, or ``start`` is after ``end``.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        first, last = date_range(start, end)
        statement = sa.select(PerformanceMetrics).where(PerformanceMetrics.bot_id == key)
        if first is not None:
            statement = statement.where(PerformanceMetrics.metric_date >= first)
        if last is not None:
            statement = statement.where(PerformanceMetrics.metric_date <= last)
        return self._all(statement)
