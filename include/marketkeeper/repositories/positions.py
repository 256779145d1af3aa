"""Positions: a bot's positions, the open ones, and closing a position."""

from __future__ import annotations

import builtins
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from marketkeeper.ledger.models import BotInstance, Position, PositionStatus
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.errors import ConflictError, ValidationError
from marketkeeper.repositories.validation import RecordId, as_enum


class PositionRepository(Repository[Position]):
    """Positions, newest first."""

    model = Position
    default_order = ("-created_at",)
    positive_fields = frozenset({"leverage"})
    non_negative_fields = frozenset({"quantity", "entry_price", "current_price", "margin"})

    def by_bot(self, bot_id: RecordId, *, status: PositionStatus | str | None = None) -> builtins.list[Position]:
        """The bot's positions, optionally only those in ``status``.

        :raises NotFoundError: the bot does not exist.
        :raises ValidationError: ``status`` is not a position status.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        statement = sa.select(Position).where(Position.bot_id == key)
        if status is not None:
            statement = statement.where(Position.status == as_enum(PositionStatus, status, field="status"))
        return self._all(statement)

    def open_positions(self, *, bot_id: RecordId | None = None) -> builtins.list[Position]:
        """The open positions of every bot, or of ``bot_id`` only."""
        if bot_id is not None:
            return self.by_bot(bot_id, status=PositionStatus.OPEN)
        return self._all(sa.select(Position).where(Position.status == PositionStatus.OPEN))

    def close(
        self,
        position_id: RecordId,
        *,
        closed_at: datetime,
        realized_pnl: Decimal | None = None,
        status: PositionStatus | str = PositionStatus.CLOSED,
    ) -> Position:
        """Close an open position at ``closed_at``: unrealized P&L becomes zero, ``realized_pnl`` is recorded.

        :param status: ``closed`` or ``liquidated``.
        :raises NotFoundError: the position does not exist.
        :raises ConflictError: the position is not open any more.
        :raises ValidationError: ``closed_at`` is naive or ``status`` is ``open``.
        """
        position = self.get(position_id)
        if as_enum(PositionStatus, status, model=self.name, field="status") is PositionStatus.OPEN:
            raise ValidationError("a position is closed as 'closed' or 'liquidated'", model=self.name, field="status")
        if position.status is not PositionStatus.OPEN:
            raise ConflictError(
                self.name,
                constraint=None,
                fields=("status",),
                detail=f"position {position.id} is already {position.status.value}",
            )
        changes: dict[str, object] = {"status": status, "closed_at": closed_at, "unrealized_pnl": Decimal(0)}
        if realized_pnl is not None:
            changes["realized_pnl"] = realized_pnl
        return self.update(position.id, **changes)
