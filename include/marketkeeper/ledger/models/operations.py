"""What happens around the trading: alerts to users, the audit trail, system events and the backup catalog."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketkeeper.ledger.base import Base, BigIntKey, UUIDPrimaryKey
from marketkeeper.ledger.models.enums import AlertSeverity, BackupStatus, EventSeverity
from marketkeeper.ledger.types import enum_type, utcnow

if TYPE_CHECKING:
    from marketkeeper.ledger.models.trading import Trade, User


class Alert(UUIDPrimaryKey, Base):
    """An alert to a user, or (``user_id`` NULL) an operator alert of the platform itself: an SLO breach
    (``key`` names it, ``since`` when it began, ``resolved_at`` when it ended; migration 0006) or a failed task.

    At most one *open* alert per ``key`` (a partial unique index), so a breach is never raised twice.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        sa.Index("ix_alerts_user_id_is_read", "user_id", "is_read"),
        sa.Index("ix_alerts_severity_timestamp", "severity", "timestamp"),
        sa.Index(
            "uq_alerts_open_key",
            "key",
            unique=True,
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    alert_type: Mapped[str] = mapped_column(sa.String(50))
    severity: Mapped[AlertSeverity] = mapped_column(enum_type(AlertSeverity, "alert_severity"))
    title: Mapped[str] = mapped_column(sa.String(200))
    message: Mapped[str] = mapped_column(sa.Text())
    #: Column ``metadata``; the attribute cannot be called that (``Base.metadata`` is the schema).
    extra_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    is_read: Mapped[bool] = mapped_column(default=False)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    #: An operator alert's identity (``slo:subject`` or ``task:dag.task:run``); ``None`` for user alerts.
    key: Mapped[str | None] = mapped_column(sa.String(500))
    #: The series or store an operator alert is about.
    subject: Mapped[str | None] = mapped_column(sa.String(200))
    since: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]

    user: Mapped[User | None] = relationship(back_populates="alerts")


class AuditLog(UUIDPrimaryKey, Base):
    """The audit trail outlives its user: deleting a user keeps the rows with ``user_id`` NULL."""

    __tablename__ = "audit_logs"
    __table_args__ = (sa.Index("ix_audit_logs_user_id_timestamp", "user_id", "timestamp"),)

    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(sa.String(100))
    resource: Mapped[str] = mapped_column(sa.String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # 45 characters hold the longest textual IPv6 address (IPv4-mapped form).
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(500))
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship(back_populates="audit_logs")


class SystemEvent(UUIDPrimaryKey, Base):
    """The storage layer's event log: what the system did, at which severity, optionally about a trade."""

    __tablename__ = "system_events"
    __table_args__ = (
        sa.Index("ix_system_events_timestamp", "timestamp"),
        sa.Index("ix_system_events_severity_timestamp", "severity", "timestamp"),
    )

    event_type: Mapped[str] = mapped_column(sa.String(50))
    severity: Mapped[EventSeverity] = mapped_column(enum_type(EventSeverity, "event_severity"))
    message: Mapped[str] = mapped_column(sa.Text())
    symbol: Mapped[str | None] = mapped_column(sa.String(32))
    trade_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("trades.id", ondelete="SET NULL"), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    trade: Mapped[Trade | None] = relationship()


class BackupRun(Base):
    """One backup attempt in the catalog: where it went, how big, its checksum, the tool and server that made
    it, the figures the store held when it was taken, and the outcome of the last restore drill.

    ``store`` (ledger, influxdb, redis) and ``kind`` (pg_dump-custom, influxd-portable, redis-rdb) stay free
    text so a new backend needs no migration; ``status`` is a closed vocabulary (:class:`BackupStatus`).
    ``figures`` are recorded at backup time (per-table row counts and content checksums, per-series daily
    candle counts and sums, per-namespace Redis key counts); a drill compares the restored copy against them.
    """

    __tablename__ = "backup_runs"
    __table_args__ = (
        sa.Index("ix_backup_runs_store_started_at", "store", "started_at"),
        sa.CheckConstraint("size_bytes IS NULL OR size_bytes >= 0", name="size_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    store: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(32))
    location: Mapped[str] = mapped_column(sa.String(1000))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[BackupStatus] = mapped_column(enum_type(BackupStatus, "backup_status"), default=BackupStatus.RUNNING)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger())
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    tool_version: Mapped[str | None] = mapped_column(sa.String(200))
    server_version: Mapped[str | None] = mapped_column(sa.String(200))
    error: Mapped[str | None] = mapped_column(sa.Text())
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The last time ``backup verify`` (or a drill) found the stored file's sha256 equal to the recorded one.
    checksum_verified_at: Mapped[datetime | None]
    drilled_at: Mapped[datetime | None]
    drill_error: Mapped[str | None] = mapped_column(sa.Text())
    #: Seconds from the start of the drill's restore until the scratch target held the data (recovery time).
    rto_seconds: Mapped[float | None] = mapped_column(sa.Double())
    #: The backup's age in seconds when it was drilled (how much would be lost restoring it then).
    rpo_seconds: Mapped[float | None] = mapped_column(sa.Double())
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The process running the attempt (``host``, ``pid``, ``started``: its start time, epoch seconds), so a
    #: later run can tell an attempt still running from one whose process ended without finishing (migration
    #: 0008; ``None`` on older rows).
    process: Mapped[dict[str, Any] | None]
