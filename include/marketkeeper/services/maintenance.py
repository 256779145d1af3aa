"""Use case: keep the ledger's own tables from growing without bound. ``marketkeeper maintenance [--dry-run]``
and the ``ledger_maintenance`` DAG call :func:`maintain_ledger`.

Deletes, by configured age (``MARKETKEEPER_KEEP_*_DAYS``): data-quality runs (their quarantined rows keep their
evidence, with the run link set NULL), quarantined candles, system events, gaps that were filled, and audit
rows; each in batches that commit on their own. Then ``VACUUM (ANALYZE)`` of the tables that churn (PostgreSQL;
a no-op on SQLite).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from marketkeeper.settings import Settings, get_settings
from marketkeeper.store_set import StoreConfig

__all__ = ["MaintenanceReport", "maintain_ledger"]

log = logging.getLogger("marketkeeper.maintenance")


@dataclass
class MaintenanceReport:
    """Per table: the cutoff and the rows deleted (or, in a dry run, that would be); the tables vacuumed."""

    dry_run: bool
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    vacuumed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "tables": self.tables, "vacuumed": self.vacuumed}


def _policies(settings: Settings) -> list[tuple[str, Any, int]]:
    from marketkeeper.ledger.models import (
        AuditLog,
        CandleGap,
        DataQualityRun,
        GapStatus,
        QuarantinedCandle,
        SystemEvent,
    )
    from marketkeeper.repositories.maintenance import AgedRows

    return [
        (
            "quarantined_candles",
            AgedRows(QuarantinedCandle, "quarantined_at"),
            settings.marketkeeper_keep_quarantined_days,
        ),
        ("data_quality_runs", AgedRows(DataQualityRun, "run_at"), settings.marketkeeper_keep_quality_runs_days),
        ("system_events", AgedRows(SystemEvent, "timestamp"), settings.marketkeeper_keep_system_events_days),
        (
            "candle_gaps",
            AgedRows(CandleGap, "resolved_at", CandleGap.status == GapStatus.FILLED),
            settings.marketkeeper_keep_filled_gaps_days,
        ),
        ("audit_logs", AgedRows(AuditLog, "timestamp"), settings.marketkeeper_keep_audit_days),
    ]


def maintain_ledger(
    config: StoreConfig, *, dry_run: bool = False, now: datetime | None = None, settings: Settings | None = None
) -> MaintenanceReport:
    """Delete the aged rows of the platform's tables and vacuum the churning ones (see the module docstring).

    :param dry_run: count what would be deleted and name what would be vacuumed; change nothing.
    """
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.ledger.models import Candle, PendingDownsample
    from marketkeeper.repositories import unit_of_work
    from marketkeeper.repositories.maintenance import count_aged, delete_aged, vacuum_analyze

    clock = now or datetime.now(UTC)
    rules = _policies(settings or get_settings())
    report = MaintenanceReport(dry_run=dry_run)
    engine = create_ledger_engine(config.ledger_url)
    try:
        for name, aged, days in rules:
            cutoff = clock - timedelta(days=days)
            if dry_run:
                with unit_of_work(engine) as repos:
                    rows = count_aged(repos.session, aged, cutoff)
            else:
                rows = delete_aged(engine, aged, cutoff)
            report.tables[name] = {"keep_days": days, "cutoff": cutoff.isoformat(), "rows": rows}
            log.info("%s: %s %d row(s) older than %s", name, "would delete" if dry_run else "deleted", rows, cutoff)
        churning = [aged.table for _, aged, _ in rules] + [Candle.__table__, PendingDownsample.__table__]
        if dry_run:
            report.vacuumed = [t.name for t in churning] if engine.dialect.name == "postgresql" else []
        else:
            report.vacuumed = vacuum_analyze(engine, churning)
    finally:
        engine.dispose()
    return report
