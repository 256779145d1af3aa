"""What the backup use cases return: a catalog row as the CLI, the DAGs' XCom and JSON show it, a drill's
outcome, a store skipped (and why), a rotation plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketkeeper.backups.errors import NoBackupError
from marketkeeper.ledger.models import BackupRun

__all__ = ["BackupOutcome", "DrillOutcome", "PrunePlan", "StoreSkipped"]


@dataclass(frozen=True)
class BackupOutcome:
    """One ``backup_runs`` row as the CLI, the DAGs and JSON show it."""

    id: int
    store: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    size: int | None
    sha256: str | None
    location: str
    tool_version: str | None
    server_version: str | None
    error: str | None
    drilled_at: datetime | None
    drill_error: str | None
    rto_seconds: float | None
    rpo_seconds: float | None

    @classmethod
    def of(cls, run: BackupRun) -> BackupOutcome:
        return cls(
            id=run.id,
            store=run.store,
            kind=run.kind,
            status=str(run.status),
            started_at=run.started_at,
            finished_at=run.finished_at,
            size=run.size_bytes,
            sha256=run.sha256,
            location=run.location,
            tool_version=run.tool_version,
            server_version=run.server_version,
            error=run.error,
            drilled_at=run.drilled_at,
            drill_error=run.drill_error,
            rto_seconds=run.rto_seconds,
            rpo_seconds=run.rpo_seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (times as ISO 8601)."""
        return {name: value.isoformat() if isinstance(value, datetime) else value for name, value in vars(self).items()}


@dataclass(frozen=True)
class DrillOutcome:
    """How the drill of one store's newest backup went."""

    store: str
    backup_id: int
    passed: bool
    error: str | None
    rto_seconds: float | None
    rpo_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class StoreSkipped:
    """A store a run passed over without an attempt (no ``backup_runs`` row): not configured here, or (a
    drill) no backup of it yet. Not a failure.

    :param reason: a few words (``not configured``, ``no backup to drill yet``).
    :param detail: what to know or do about it (``INFLUXDB_URL not set ...``).
    """

    store: str
    reason: str
    detail: str | None = None

    @classmethod
    def no_backup(cls, exc: NoBackupError) -> StoreSkipped:
        """A drill of a store with no backup yet."""
        return cls(exc.store, "no backup to drill yet", exc.hint)

    def __str__(self) -> str:
        return f"{self.store}: {self.reason}, skipped" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class PrunePlan:
    """What rotation keeps and deletes (``deleted`` is what it would delete, with ``dry_run``), and the ids of
    abandoned attempts settled as failed first (none with ``dry_run``)."""

    kept: tuple[BackupOutcome, ...]
    deleted: tuple[BackupOutcome, ...]
    dry_run: bool
    settled: tuple[int, ...] = ()
