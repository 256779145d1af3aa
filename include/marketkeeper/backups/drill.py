"""A restore drill of one backup: fetch it (every byte checked against its sha256), restore it into a scratch
target, read the figures there and compare them with those recorded at backup time.

What a passing drill proves: the stored file is the one written, the store's own restore tool accepts it, and
the restored copy holds the same rows (ledger: count and content of every table), candles (InfluxDB: count
and sums per series and day) and keys (Redis: persistent keys per namespace, watermark values) as the store
did when the backup was taken. What it does not prove: that the figures cover everything (InfluxDB: only
the ``candles`` measurement, before the settle cutoff; Redis: only the marketkeeper prefix in one DB, no
keys with a TTL), that a restore into production would take as long (the scratch target is on the same
server), or anything written after the backup (that is the RPO).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from marketkeeper.backups.base import Figures, StoreBackup, first_difference
from marketkeeper.backups.destination import Destination
from marketkeeper.errors import first_line

__all__ = ["DrillResult", "run_drill"]


@dataclass(frozen=True)
class DrillResult:
    """How a drill went: ``difference`` is ``None`` when the restored copy matched."""

    difference: str | None
    rto_seconds: float | None
    rpo_seconds: float
    restored: Figures | None

    @property
    def passed(self) -> bool:
        return self.difference is None


def run_drill(
    tool: StoreBackup,
    destination: Destination,
    *,
    backup_id: int,
    location: str,
    sha256: str,
    finished_at: datetime,
    recorded: Figures,
) -> DrillResult:
    """Drill one backup; never raises for a failed check, restore or comparison (it is the result)."""
    rpo = (datetime.now(UTC) - finished_at).total_seconds()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"marketkeeper-drill-{tool.store}-") as tmp:
        try:
            local = destination.fetch(location, Path(tmp, f"backup{tool.suffix}"), expected_sha256=sha256)
            with tool.scratch(local, label=str(backup_id), recorded=recorded) as restored:
                rto = time.monotonic() - started
                difference = first_difference(recorded, restored)
        except Exception as exc:  # the drill's outcome: recorded on the row, raised by the caller
            return DrillResult(difference=first_line(exc), rto_seconds=None, rpo_seconds=rpo, restored=None)
    return DrillResult(difference=difference, rto_seconds=rto, rpo_seconds=rpo, restored=restored)
