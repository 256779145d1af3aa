"""Alerts: a user's unread alerts, alerts by severity, and marking alerts read."""

from __future__ import annotations

import builtins
from collections.abc import Iterable

import sqlalchemy as sa

from marketkeeper.ledger.models import Alert, AlertSeverity
from marketkeeper.repositories.base import Page, Repository
from marketkeeper.repositories.errors import NotFoundError
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE, RecordId, as_enum


class AlertRepository(Repository[Alert]):
    """Alerts to users, newest first."""

    model = Alert
    default_order = ("-timestamp",)

    def unread_by_user(self, user_id: RecordId) -> builtins.list[Alert]:
        """The user's unread alerts, newest first.

        :raises NotFoundError: the user does not exist.
        """
        return self._all(self._of_user(user_id, Alert.is_read.is_(False)))

    def by_severity(
        self, severity: AlertSeverity | str, *, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0
    ) -> Page[Alert]:
        """One page of every user's alerts of ``severity``, newest first.

        :raises ValidationError: ``severity`` is not an alert severity.
        """
        level = as_enum(AlertSeverity, severity, model=self.name, field="severity")
        return self._page(sa.select(Alert).where(Alert.severity == level), limit=limit, offset=offset)

    def mark_read(self, alert_ids: Iterable[RecordId]) -> int:
        """Mark the alerts read and return how many changed (already-read ones do not count).

        :raises NotFoundError: an id does not exist (nothing is marked).
        """
        keys = {self._key(alert_id) for alert_id in alert_ids}
        if not keys:
            return 0
        missing = self._missing_keys(keys)
        if missing:
            raise NotFoundError(self.name, ", ".join(sorted(str(key) for key in missing)))
        unread = [row for row in self._rows(keys) if not row.is_read]
        for alert in unread:
            alert.is_read = True
        self._flush("update")
        return len(unread)

    def mark_all_read(self, user_id: RecordId) -> int:
        """Mark every unread alert of the user read and return how many changed.

        :raises NotFoundError: the user does not exist.
        """
        unread = self.unread_by_user(user_id)
        for alert in unread:
            alert.is_read = True
        self._flush("update")
        return len(unread)

    def _rows(self, keys: set[object]) -> builtins.list[Alert]:
        return builtins.list(self.session.scalars(sa.select(Alert).where(Alert.id.in_(keys))).all())
