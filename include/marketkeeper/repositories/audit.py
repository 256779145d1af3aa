"""The audit trail: recording an action and a user's audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marketkeeper.ledger.models import AuditLog
from marketkeeper.repositories.base import Page, Repository
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE, RecordId


class AuditLogRepository(Repository[AuditLog]):
    """Audit log entries, newest first; entries outlive their user (``user_id`` becomes NULL)."""

    model = AuditLog
    default_order = ("-timestamp",)

    def record(
        self,
        *,
        user_id: RecordId | None,
        action: str,
        resource: str,
        details: dict[str, Any] | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        timestamp: datetime | None = None,
    ) -> AuditLog:
        """Append one entry: ``user_id`` did ``action`` on ``resource`` (``None`` for the system itself)."""
        values: dict[str, Any] = {
            "user_id": user_id,
            "action": action,
            "resource": resource,
            "details": details or {},
            "ip_address": ip_address,
            "user_agent": user_agent,
        }
        if timestamp is not None:
            values["timestamp"] = timestamp
        return self.create(**values)

    def by_user(self, user_id: RecordId, *, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0) -> Page[AuditLog]:
        """One page of the user's entries, newest first.

        :raises NotFoundError: the user does not exist.
        """
        return self._page(self._of_user(user_id), limit=limit, offset=offset)
