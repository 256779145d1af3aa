"""Grandfather-father-son rotation: which complete backups of a store to keep and which to delete.

Kept: the newest backup of each of the ``daily`` most recent days that have one, of each of the ``weekly``
most recent ISO weeks, of each of the ``monthly`` most recent months; the newest backup whatever its state;
and the newest *verified* one (a drill restored it and found it equal), whatever the counts say, so rotation
can never leave a store with nothing proven restorable. Everything else goes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

__all__ = ["Candidate", "Retention", "plan_rotation"]


@dataclass(frozen=True)
class Retention:
    """How many daily, weekly and monthly backups each store keeps."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 6

    def __post_init__(self) -> None:
        for name in ("daily", "weekly", "monthly"):
            if getattr(self, name) < 0:
                raise ValueError(f"backup retention {name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class Candidate:
    """A complete backup rotation may keep or delete."""

    id: int
    store: str
    finished_at: datetime
    verified: bool


def _newest_per(backups: Sequence[Candidate], period: Callable[[date], Hashable], count: int) -> set[int]:
    kept: set[int] = set()
    seen: list[Hashable] = []
    for backup in backups:  # newest first
        key = period(backup.finished_at.date())
        if key in seen:
            continue
        if len(seen) >= count:
            break
        seen.append(key)
        kept.add(backup.id)
    return kept


def plan_rotation(backups: Sequence[Candidate], retention: Retention) -> tuple[list[Candidate], list[Candidate]]:
    """``(keep, delete)`` over the complete backups of every store, each list newest first."""
    keep: list[Candidate] = []
    delete: list[Candidate] = []
    for store in sorted({b.store for b in backups}):
        mine = sorted((b for b in backups if b.store == store), key=lambda b: (b.finished_at, b.id), reverse=True)
        kept = {mine[0].id}
        kept |= _newest_per(mine, lambda d: d, retention.daily)
        kept |= _newest_per(mine, lambda d: d.isocalendar()[:2], retention.weekly)
        kept |= _newest_per(mine, lambda d: (d.year, d.month), retention.monthly)
        verified = next((b for b in mine if b.verified), None)
        if verified is not None:
            kept.add(verified.id)
        for backup in mine:
            (keep if backup.id in kept else delete).append(backup)
    return keep, delete
