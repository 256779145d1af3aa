"""The ops status document: per series, per store and per backup figures, and the SLO breaches among them.

Plain frozen dataclasses, so the CLI table, the JSON document, the UI page and the Prometheus metrics all
render the very same values (``as_dict`` gives the JSON shape, times as ISO 8601 UTC).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from marketkeeper.health import StoreHealth

__all__ = ["BackupFigures", "Breach", "OperatorAlert", "OpsStatus", "SeriesFigures", "Severity", "StoreHealth"]

Severity = Literal["low", "medium", "high", "critical"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class SeriesFigures:
    """One series: freshness, completeness and quality, and its last ingest or backfill run.

    :param last_candle: open time of the newest stored candle (``None``: none stored).
    :param lag_candles: closed candles after ``last_candle`` not stored yet (0 = fresh).
    :param stale_since: when the lag passed its SLO (``None`` when within it).
    :param open_gaps: registry gaps still to fill (``open``, ``partially_filled``, ``failed``).
    :param quality_failure_share: failing rows / checked rows over 24 h (``None``: nothing checked).
    :param last_run_at: the newest quality-gate run over the series (every ingest or backfill window writes one).
    :param last_run_by: the DAG that ran it (``ohlcv_ingest``, ``ohlcv_gaps``) or ``cli``.
    :param status: ``ok``, ``stale`` (lag beyond its SLO or nothing stored), ``gaps`` or ``error``.
    """

    exchange: str
    symbol: str
    timeframe: str
    last_candle: datetime | None = None
    lag_candles: int | None = None
    stale_since: datetime | None = None
    open_gaps: int = 0
    missing_candles: int = 0
    oldest_gap_seen: datetime | None = None
    quality_runs_24h: int = 0
    rows_checked_24h: int = 0
    rows_failed_24h: int = 0
    quarantined_24h: int = 0
    last_run_at: datetime | None = None
    last_run_by: str | None = None
    last_run_ok: bool | None = None
    status: str = "ok"
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.exchange}:{self.symbol}:{self.timeframe}"

    @property
    def quality_failure_share(self) -> float | None:
        return self.rows_failed_24h / self.rows_checked_24h if self.rows_checked_24h else None

    def as_dict(self) -> dict[str, Any]:
        return _jsonable({**asdict(self), "series": self.label, "quality_failure_share": self.quality_failure_share})


@dataclass(frozen=True)
class BackupFigures:
    """The newest backups of one store and its last restore drill."""

    store: str
    last_succeeded_at: datetime | None = None
    last_verified_at: datetime | None = None
    last_drill_at: datetime | None = None
    last_drill_status: str | None = None
    last_drill_error: str | None = None
    location: str | None = None
    last_attempt_at: datetime | None = None
    last_attempt_status: str | None = None
    last_error: str | None = None

    def age_seconds(self, now: datetime, *, verified: bool = True) -> float | None:
        at = self.last_verified_at if verified else self.last_succeeded_at
        return None if at is None else (now - at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Breach:
    """One SLO breached by one series or store: what, how bad, and since when (``None``: not known)."""

    slo: str
    subject: str
    severity: Severity
    message: str
    since: datetime | None

    @property
    def key(self) -> str:
        """Identifies the breach across evaluations, so an open alert is never raised twice."""
        return f"{self.slo}:{self.subject}"

    def as_dict(self) -> dict[str, Any]:
        return _jsonable({**asdict(self), "key": self.key})


@dataclass(frozen=True)
class OperatorAlert:
    """One open operator alert: an SLO breach the ops monitor recorded, or a failed task (``kind``
    ``slo_breach`` or ``task_failed``). A failed task counts against the status until that task succeeds
    in a later run or an operator acknowledges it (``marketkeeper status --ack ID``)."""

    id: str
    kind: str
    severity: str
    subject: str | None
    title: str
    message: str
    since: datetime | None

    @property
    def short_id(self) -> str:
        """The id's first 8 hex digits: enough for ``--ack``."""
        return self.id.replace("-", "")[:8]

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class OpsStatus:
    """Everything :func:`marketkeeper.services.status.ops_status` measured at ``generated_at``.

    :param stores: each store as the one checker (:func:`marketkeeper.health.check_stores`) measured it.

    :param backups: ``None`` when no backup is configured (the section says so), else one entry per store.
    :param alerts: the open operator alerts, newest first (empty when the ledger could not be read).
    """

    generated_at: datetime
    series: list[SeriesFigures]
    stores: list[StoreHealth]
    backups: list[BackupFigures] | None
    breaches: list[Breach]
    slos: dict[str, Any] = field(default_factory=dict)
    alerts: list[OperatorAlert] = field(default_factory=list)

    @property
    def failed_tasks(self) -> list[OperatorAlert]:
        """The open ``task_failed`` alerts: each counts like a breach until resolved or acknowledged."""
        return [a for a in self.alerts if a.kind == "task_failed"]

    @property
    def ok(self) -> bool:
        return not self.breaches and not self.failed_tasks

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "ok": self.ok,
            "series": [s.as_dict() for s in self.series],
            "stores": [s.as_dict() for s in self.stores],
            "backups": None if self.backups is None else [b.as_dict() for b in self.backups],
            "backups_note": "no backups configured" if not self.backups else None,
            "breaches": [b.as_dict() for b in self.breaches],
            "alerts": [a.as_dict() for a in self.alerts],
            "slos": self.slos,
        }
