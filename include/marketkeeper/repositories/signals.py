"""Trading signals in the ledger (when InfluxDB is not configured): an idempotent upsert on market, source and
time, and the signals of a market over a window."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from marketkeeper.ledger.models import TradingSignal
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.errors import ValidationError

_KEY = ("exchange", "symbol", "source", "time")
_VALUES = ("kind", "value", "confidence")


class SignalRepository(Repository[TradingSignal]):
    """Signals by market and time; at most one per market, source and time."""

    model = TradingSignal
    default_order = ("time", "source")

    def upsert(self, **values: Any) -> None:
        """Store one signal (``exchange``, ``symbol``, ``source``, ``time``, ``kind``, ``value``,
        ``confidence``); one already stored for the same market, source and time is replaced.

        :raises ValidationError: a value does not fit its column.
        """
        clean = self._validated({**values, "stored_at": datetime.now(UTC)})
        insert = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(TradingSignal)
        statement = insert.values(**clean)
        statement = statement.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={name: statement.excluded[name] for name in (*_VALUES, "stored_at")},
        )
        self.session.execute(statement)
        self._flush("upsert")

    def between(
        self,
        exchange: str,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        source: str | None = None,
        kind: str | None = None,
        limit: int,
    ) -> builtins.list[TradingSignal]:
        """The signals of a market with ``start <= time < end``, oldest first, at most ``limit``.

        :raises ValidationError: ``limit`` is not a positive integer or a time is naive.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"must be a positive integer, got {limit!r}", model=self.name, field="limit")
        statement = sa.select(TradingSignal).where(TradingSignal.exchange == exchange, TradingSignal.symbol == symbol)
        statement = self._within(statement, TradingSignal.time, start, end)
        if source is not None:
            statement = statement.where(TradingSignal.source == source)
        if kind is not None:
            statement = statement.where(TradingSignal.kind == kind)
        return self._all(statement.limit(limit))
