"""The backup catalog (``backup_runs``): one row per attempt, its drill outcome, and the newest state per store.

Life cycle of a row (``marketkeeper.services.backups`` drives it)::

    running --(file complete, checksummed, moved into place)--> succeeded
    running --(tool failed, killed, destination failed)------> failed        (no file under a final name)
    running --(its process ended without finishing)---------> failed        ("abandoned: ...", settled later)
    succeeded|verified|drill_failed --(drill matched)--------> verified
    succeeded|verified|drill_failed --(drill differed/failed)-> drill_failed
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa

from marketkeeper.ledger.models import BackupRun, BackupStatus
from marketkeeper.ledger.types import utcnow
from marketkeeper.repositories.base import Repository

#: The statuses of a backup whose file is complete and checksummed (a drill outcome does not undo that).
COMPLETE_STATUSES: tuple[BackupStatus, ...] = (
    BackupStatus.SUCCEEDED,
    BackupStatus.VERIFIED,
    BackupStatus.DRILL_FAILED,
)

DrillStatus = Literal["verified", "drill_failed"]


@dataclass(frozen=True)
class BackupOverview:
    """Where one store's backups stand, for status pages and alerts.

    :param store: ``ledger``, ``influxdb`` or ``redis``.
    :param last_succeeded_at: when the newest complete backup finished (``None``: there is none).
    :param last_verified_at: when a drill last restored one of its backups and found it equal.
    :param last_drill_at: when the newest drill of any of its backups ran, whatever the outcome.
    :param last_drill_status: that drill's outcome.
    :param last_drill_error: that drill's first difference or failure, when it failed.
    :param location: where the newest complete backup is stored.
    :param last_attempt_at: when the newest attempt of any outcome started.
    :param last_attempt_status: that attempt's status (``running``, ``failed``, ...).
    :param last_error: the newest failed attempt's error.
    """

    store: str
    last_succeeded_at: datetime | None
    last_verified_at: datetime | None
    last_drill_at: datetime | None
    last_drill_status: DrillStatus | None
    last_drill_error: str | None
    location: str | None
    last_attempt_at: datetime | None = None
    last_attempt_status: str | None = None
    last_error: str | None = None


class BackupRepository(Repository[BackupRun]):
    """Backup attempts, newest first."""

    model = BackupRun
    default_order = ("-started_at",)
    non_negative_fields = frozenset({"size_bytes", "rto_seconds", "rpo_seconds"})

    # --- writing the life cycle ------------------------------------------------------------------------------

    def start(self, *, store: str, kind: str, location: str, **values: Any) -> BackupRun:
        """A new ``running`` row for an attempt about to write ``location``."""
        return self.create(store=store, kind=kind, location=location, status=BackupStatus.RUNNING, **values)

    def succeed(self, run: BackupRun, *, size_bytes: int, sha256: str, location: str, **values: Any) -> BackupRun:
        """Mark ``run`` complete: its file is at ``location`` under its final name with this checksum."""
        return self.record(
            run,
            status=BackupStatus.SUCCEEDED,
            finished_at=utcnow(),
            size_bytes=size_bytes,
            sha256=sha256,
            location=location,
            error=None,
            **values,
        )

    def fail(self, run: BackupRun, error: str) -> BackupRun:
        """Mark ``run`` failed with ``error`` (one line, no secrets)."""
        return self.record(run, status=BackupStatus.FAILED, finished_at=utcnow(), error=error)

    def checksum_verified(self, run: BackupRun) -> BackupRun:
        """Record that the stored file's sha256 was found equal to the recorded one, now."""
        return self.record(run, checksum_verified_at=utcnow())

    def drilled(
        self,
        run: BackupRun,
        *,
        passed: bool,
        error: str | None,
        rto_seconds: float | None,
        rpo_seconds: float | None,
        details: dict[str, Any],
    ) -> BackupRun:
        """Record a drill's outcome on the backup it restored."""
        return self.record(
            run,
            status=BackupStatus.VERIFIED if passed else BackupStatus.DRILL_FAILED,
            drilled_at=utcnow(),
            drill_error=error,
            rto_seconds=rto_seconds,
            rpo_seconds=rpo_seconds,
            details={**(run.details or {}), "drill": details},
        )

    # --- reading ---------------------------------------------------------------------------------------------

    def of_store(self, store: str | None = None, *, limit: int = 1000) -> builtins.list[BackupRun]:
        """The newest ``limit`` attempts, of every store or of ``store``, newest first."""
        statement = sa.select(BackupRun)
        if store is not None:
            statement = statement.where(BackupRun.store == store)
        return self._all(statement.limit(limit), order=("-started_at", "-id"))

    def running(self, store: str | None = None) -> builtins.list[BackupRun]:
        """Every attempt still ``running`` (or left so by a process that ended), of ``store`` or all, oldest first."""
        statement = sa.select(BackupRun).where(BackupRun.status == BackupStatus.RUNNING)
        if store is not None:
            statement = statement.where(BackupRun.store == store)
        return self._all(statement, order=("started_at", "id"))

    def settle_restored_copy(self, run: BackupRun) -> bool:
        """In a ledger restored from ``run`` (a backup of the catalog's ledger), set ``run``'s own row, which
        the dump caught ``running``, to what the catalog says of it: its status, file and checksum. Only the
        columns every schema since migration 0005 has are written (the copy may predate later ones).

        :returns: whether the copy held that row still ``running``.
        """
        statement = (
            sa.update(BackupRun)
            .where(BackupRun.id == run.id, BackupRun.status == BackupStatus.RUNNING)
            .values(
                status=run.status,
                finished_at=run.finished_at,
                size_bytes=run.size_bytes,
                sha256=run.sha256,
                location=run.location,
                tool_version=run.tool_version,
                server_version=run.server_version,
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
        result = cast("sa.CursorResult[Any]", self.session.execute(statement))  # an UPDATE's result
        return bool(result.rowcount)

    def complete(self, store: str | None = None) -> builtins.list[BackupRun]:
        """Every complete backup (succeeded, verified, drill_failed), of ``store`` or all, newest first."""
        statement = sa.select(BackupRun).where(BackupRun.status.in_(COMPLETE_STATUSES))
        if store is not None:
            statement = statement.where(BackupRun.store == store)
        return self._all(statement, order=("-finished_at", "-id"))

    def newest_complete(self, store: str) -> BackupRun | None:
        """The newest complete backup of ``store``: what a drill restores (``None``: there is none)."""
        return self._newest(
            BackupRun.store == store, BackupRun.status.in_(COMPLETE_STATUSES), order=("-finished_at", "-id")
        )

    def newest_verified(self, store: str) -> BackupRun | None:
        """The newest backup of ``store`` that a drill found equal (rotation never deletes it)."""
        return self._newest(
            BackupRun.store == store, BackupRun.status == BackupStatus.VERIFIED, order=("-finished_at", "-id")
        )

    def stores(self) -> builtins.list[str]:
        """Every store with at least one attempt, sorted."""
        return sorted(self.session.scalars(sa.select(BackupRun.store).distinct()))

    def newest_per_store(self) -> dict[str, BackupOverview]:
        """Where each store's backups stand (only stores with at least one attempt appear)."""
        return {store: self._overview(store) for store in self.stores()}

    def delete_rows(self, runs: Sequence[BackupRun]) -> None:
        """Remove pruned backups from the catalog (their files are already gone)."""
        for run in runs:
            self.session.delete(run)
        self._flush("delete")

    # --- internals -------------------------------------------------------------------------------------------

    def record(self, run: BackupRun, **changes: Any) -> BackupRun:
        """Set fields of ``run`` (checked against their columns) and flush."""
        for name, value in self._validated(changes).items():
            setattr(run, name, value)
        self._flush("update")
        return run

    def _newest(self, *criteria: sa.ColumnElement[bool], order: Sequence[str]) -> BackupRun | None:
        rows = self._all(sa.select(BackupRun).where(*criteria).limit(1), order=order)
        return rows[0] if rows else None

    def _overview(self, store: str) -> BackupOverview:
        of_store = BackupRun.store == store
        complete = self.newest_complete(store)
        verified = self._newest(of_store, BackupRun.status == BackupStatus.VERIFIED, order=("-drilled_at", "-id"))
        drill = self._newest(of_store, BackupRun.drilled_at.is_not(None), order=("-drilled_at", "-id"))
        attempt = self._newest(of_store, order=("-started_at", "-id"))
        failed = self._newest(of_store, BackupRun.status == BackupStatus.FAILED, order=("-started_at", "-id"))
        drill_status: DrillStatus | None = None
        if drill is not None:
            drill_status = "verified" if drill.status == BackupStatus.VERIFIED else "drill_failed"
        return BackupOverview(
            store=store,
            last_succeeded_at=complete.finished_at if complete else None,
            last_verified_at=verified.drilled_at if verified else None,
            last_drill_at=drill.drilled_at if drill else None,
            last_drill_status=drill_status,
            last_drill_error=drill.drill_error if drill and drill_status == "drill_failed" else None,
            location=complete.location if complete else None,
            last_attempt_at=attempt.started_at if attempt else None,
            last_attempt_status=str(attempt.status) if attempt else None,
            last_error=failed.error if failed else None,
        )
