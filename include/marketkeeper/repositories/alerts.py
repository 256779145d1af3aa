"""Alerts: a user's unread alerts, alerts by severity, marking alerts read; and operator alerts (no user), one
open alert per key, opened and resolved by the ops monitor and the task callbacks, or acknowledged by hand.

Life cycle of an operator alert::

    (breach seen) --> open --(breach gone, next ops_monitor evaluation)---------------> resolved  (slo_breach)
    (task failed) --> open --(the same task succeeds in a later run)-----------------> resolved  (task_failed)
                      open --(`marketkeeper status --ack ID`: an operator took it on)--> resolved  (either)

``resolved_at`` is set whichever way; ``metadata.resolution`` says which.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from marketkeeper.ledger.models import Alert, AlertSeverity
from marketkeeper.repositories.base import Page, Repository
from marketkeeper.repositories.errors import NotFoundError, ValidationError
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE, RecordId, as_enum

if TYPE_CHECKING:
    from marketkeeper.ops.figures import Breach

#: ``alert_type`` of an SLO breach; a failed task's is :data:`TASK_FAILED`.
SLO_BREACH = "slo_breach"
TASK_FAILED = "task_failed"


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

    def open_slo_keys(self) -> set[str]:
        """The keys of the SLO alerts still open."""
        statement = sa.select(Alert.key).where(
            Alert.alert_type == SLO_BREACH, Alert.resolved_at.is_(None), Alert.key.is_not(None)
        )
        return {key for key in self.session.scalars(statement) if key is not None}

    def open_operator(self, *, alert_type: str | None = None) -> builtins.list[Alert]:
        """The open operator alerts (no user), newest first, optionally of one type."""
        statement = sa.select(Alert).where(Alert.user_id.is_(None), Alert.resolved_at.is_(None))
        if alert_type is not None:
            statement = statement.where(Alert.alert_type == alert_type)
        return self._all(statement)

    def unsent(self) -> builtins.list[Alert]:
        """The open operator alerts no notifier has delivered yet (``metadata.notified_at`` unset), oldest first."""
        rows = self.open_operator()
        return sorted((a for a in rows if not (a.extra_metadata or {}).get("notified_at")), key=lambda a: a.timestamp)

    def mark_sent(self, alerts: Iterable[Alert], *, at: datetime) -> None:
        """Record that ``alerts`` were delivered at ``at``."""
        for alert in alerts:
            alert.extra_metadata = {**(alert.extra_metadata or {}), "notified_at": at.isoformat()}
        self._flush("update")

    def open_slo_alert(self, breach: Breach, *, at: datetime) -> Alert:
        """Record a new breach as an open operator alert.

        :raises ConflictError: an alert with the breach's key is open already.
        """
        return self.create(
            user_id=None,
            alert_type=SLO_BREACH,
            severity=breach.severity,
            title=f"SLO {breach.slo} breached: {breach.subject}"[:200],
            message=breach.message,
            extra_metadata={"slo": breach.slo},
            key=breach.key,
            subject=breach.subject,
            since=breach.since or at,
            timestamp=at,
        )

    def open_task_failure(
        self, *, key: str, subject: str, title: str, message: str, details: dict[str, object], at: datetime
    ) -> Alert | None:
        """Record a failed task as an open operator alert; ``None`` when one with ``key`` is open already."""
        if self.session.scalar(sa.select(Alert.id).where(Alert.key == key, Alert.resolved_at.is_(None))):
            return None
        return self.create(
            user_id=None,
            alert_type=TASK_FAILED,
            severity="high",
            title=title[:200],
            message=message,
            extra_metadata=details,
            key=key,
            subject=subject[:200],
            since=at,
            timestamp=at,
        )

    def open_operator_alert(self, alert_id: str) -> Alert:
        """The open operator alert whose id is, or starts with, ``alert_id`` (at least 6 hex digits, as
        ``marketkeeper status`` shows them).

        :raises ValidationError: ``alert_id`` is too short or not hex, or more than one open alert matches.
        :raises NotFoundError: no open operator alert matches.
        """
        wanted = alert_id.strip().lower().replace("-", "")
        if len(wanted) < 6 or any(c not in "0123456789abcdef" for c in wanted):
            raise ValidationError(f"alert id {alert_id!r}: give at least its first 6 hex digits", model=self.name)
        found = [a for a in self.open_operator() if a.id.hex.startswith(wanted)]
        if not found:
            raise NotFoundError("open operator alert", alert_id)
        if len(found) > 1:
            raise ValidationError(f"alert id {alert_id!r} matches {len(found)} open alerts: give more digits")
        return found[0]

    def acknowledge(self, alert: Alert, *, at: datetime, by: str | None = None) -> Alert:
        """Resolve ``alert`` by hand: an operator took it on (it no longer counts against ``status``)."""
        alert.resolved_at = at
        resolution = {"resolution": "acknowledged", "acknowledged_at": at.isoformat(), "acknowledged_by": by}
        alert.extra_metadata = {**(alert.extra_metadata or {}), **resolution}
        self._flush("update")
        return alert

    def resolve_task_failures(self, subject: str, *, run_id: str, at: datetime) -> builtins.list[Alert]:
        """Resolve every open ``task_failed`` alert of ``subject`` (``dag.task`` or ``dag.task[i]``), whatever
        run it failed in: the task just succeeded in ``run_id``. The alerts resolved."""
        statement = sa.select(Alert).where(
            Alert.alert_type == TASK_FAILED, Alert.subject == subject, Alert.resolved_at.is_(None)
        )
        rows = builtins.list(self.session.scalars(statement).all())
        for row in rows:
            row.resolved_at = at
            row.extra_metadata = {**(row.extra_metadata or {}), "resolution": f"succeeded in run {run_id}"}
        self._flush("update")
        return rows

    def resolve(self, keys: Iterable[str], *, at: datetime) -> int:
        """Resolve the open alerts with these keys at ``at``; returns how many were open."""
        wanted = builtins.list(keys)
        if not wanted:
            return 0
        rows = self.session.scalars(sa.select(Alert).where(Alert.key.in_(wanted), Alert.resolved_at.is_(None))).all()
        for row in rows:
            row.resolved_at = at
        self._flush("update")
        return len(rows)
