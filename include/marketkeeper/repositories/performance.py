"""Performance metrics: a bot's daily rows over a range of days, its latest row, and the upsert of its days."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from marketkeeper.ledger.models import BotInstance, PerformanceMetrics
from marketkeeper.ledger.types import utcnow
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.errors import RepositoryError, ValidationError
from marketkeeper.repositories.integrity import integrity_error
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

    def find_latest(self, bot_id: RecordId) -> PerformanceMetrics | None:
        """The bot's row of its most recent day, or ``None`` when it was never rolled up.

        :raises NotFoundError: the bot does not exist.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        statement = (
            sa.select(PerformanceMetrics)
            .where(PerformanceMetrics.bot_id == key)
            .order_by(PerformanceMetrics.metric_date.desc())
            .limit(1)
        )
        return self.session.scalars(statement).first()

    def upsert_days(self, bot_id: RecordId, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace the bot's rows, one per ``metric_date``; returns how many were written.

        A day already stored keeps its ``id`` and ``created_at`` and takes every other column from its new
        row, so re-running a day replaces its figures in place.

        :param rows: ``performance_metrics`` columns of each day (``metric_date`` required; ``bot_id`` is
            filled in).
        :raises NotFoundError: the bot does not exist.
        :raises ValidationError: a row lacks ``metric_date``, repeats one, or holds a value that does not fit.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        now = utcnow()
        clean: builtins.list[dict[str, Any]] = []
        days: set[date] = set()
        for position, row in enumerate(rows):
            values = self._validated({**row, "bot_id": key})
            day = values.get("metric_date")
            if day is None:
                raise ValidationError(f"row {position} has no metric_date", model=self.name, field="metric_date")
            if day in days:
                raise ValidationError(f"row {position} repeats {day}", model=self.name, field="metric_date")
            days.add(day)
            clean.append({"id": uuid.uuid4(), "created_at": now, **values})
        if not clean:
            return 0
        # Every row has the same columns, so one statement covers them; those not set keep their defaults.
        columns = set().union(*clean)
        if any(set(row) != columns for row in clean):
            raise ValidationError("every row must set the same columns", model=self.name)
        updated = [name for name in clean[0] if name not in ("id", "created_at", "bot_id", "metric_date")]
        dialect = self._dialect
        if dialect == "postgresql":
            pg = postgresql.insert(PerformanceMetrics)
            statement: sa.Executable = pg.on_conflict_do_update(
                index_elements=["bot_id", "metric_date"], set_={name: pg.excluded[name] for name in updated}
            )
        elif dialect == "sqlite":
            lite = sqlite.insert(PerformanceMetrics)
            statement = lite.on_conflict_do_update(
                index_elements=["bot_id", "metric_date"], set_={name: lite.excluded[name] for name in updated}
            )
        else:
            raise RepositoryError(f"{self.name}: upserts need PostgreSQL or SQLite, not {dialect}")
        self._flush("update")
        try:
            self.session.execute(statement, clean)
        except sa.exc.IntegrityError as exc:
            raise integrity_error(exc, model=self.name, operation="update") from exc
        # The upsert bypasses the identity map: expire the bot's rows it holds so reads see the new values.
        for cached in builtins.list(self.session.identity_map.values()):
            if isinstance(cached, PerformanceMetrics) and cached.bot_id == key:
                self.session.expire(cached)
        return len(clean)
