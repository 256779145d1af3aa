"""System events: logging an event and reading the recent ones, optionally of one severity."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from marketkeeper.ledger.models import EventSeverity, SystemEvent
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE, RecordId, as_enum, page_bounds


class SystemEventRepository(Repository[SystemEvent]):
    """The system's event log, newest first."""

    model = SystemEvent
    default_order = ("-timestamp",)

    def log_event(
        self,
        event_type: str,
        severity: EventSeverity | str,
        message: str,
        *,
        symbol: str | None = None,
        trade_id: RecordId | None = None,
        details: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> SystemEvent:
        """Append one event and return it.

        :raises ValidationError: ``severity`` is not an event severity, or a value does not fit its column.
        """
        values: dict[str, Any] = {
            "event_type": event_type,
            "severity": severity,
            "message": message,
            "symbol": symbol,
            "trade_id": trade_id,
            "details": details or {},
        }
        if timestamp is not None:
            values["timestamp"] = timestamp
        return self.create(**values)

    def recent(
        self, *, severity: EventSeverity | str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> builtins.list[SystemEvent]:
        """The ``limit`` newest events, of every severity or of ``severity`` only.

        :raises ValidationError: ``severity`` is not an event severity, or ``limit`` is out of range.
        """
        page_bounds(limit, 0)
        statement = sa.select(SystemEvent)
        if severity is not None:
            level = as_enum(EventSeverity, severity, model=self.name, field="severity")
            statement = statement.where(SystemEvent.severity == level)
        return self._all(statement.limit(limit))

    def matching(
        self, event_type: str, details: Mapping[str, str], *, limit: int = DEFAULT_PAGE_SIZE
    ) -> builtins.list[SystemEvent]:
        """The ``limit`` newest events of ``event_type`` whose ``details`` hold each given key with that text.

        :raises ValidationError: ``limit`` is out of range.
        """
        page_bounds(limit, 0)
        statement = sa.select(SystemEvent).where(SystemEvent.event_type == event_type)
        for name, value in details.items():
            statement = statement.where(SystemEvent.details[name].as_string() == value)
        return self._all(statement.limit(limit))
