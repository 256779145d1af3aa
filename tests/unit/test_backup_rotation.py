"""Grandfather-father-son rotation and the drill's comparison, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketkeeper.backups.base import first_difference
from marketkeeper.backups.rotation import Candidate, Retention, plan_rotation

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def _daily(days: int, *, verified: set[int] = frozenset(), store: str = "ledger") -> list[Candidate]:  # type: ignore[assignment]
    return [
        Candidate(id=i, store=store, finished_at=NOW - timedelta(days=i), verified=i in verified) for i in range(days)
    ]


def test_keeps_n_daily_m_weekly_k_monthly() -> None:
    keep, delete = plan_rotation(_daily(100), Retention(daily=3, weekly=2, monthly=2))

    kept = sorted(c.id for c in keep)
    # Days 0-2; the newest of this ISO week (day 0) and of the previous one (2026-11-23..29: day 2);
    # the newest of December (day 0) and of November (day 1).
    assert kept == [0, 1, 2]
    assert len(delete) == 97


def test_weekly_and_monthly_reach_further_back_than_daily() -> None:
    keep, _ = plan_rotation(_daily(100), Retention(daily=1, weekly=3, monthly=4))

    kept = {c.finished_at.date().isoformat() for c in keep}
    # Weeks (Monday-based): Dec 1 (Tue), Nov 29 (Sun, newest of Nov 23-29), Nov 22 (Sun).
    # Months: Dec 1, Nov 30, Oct 31, Sep 30.
    assert kept == {"2026-12-01", "2026-11-29", "2026-11-22", "2026-11-30", "2026-10-31", "2026-09-30"}


def test_never_deletes_the_newest_verified_backup_whatever_the_counts() -> None:
    backups = _daily(60, verified={45, 50})

    keep, delete = plan_rotation(backups, Retention(daily=0, weekly=0, monthly=0))

    assert sorted(c.id for c in keep) == [0, 45]  # the newest backup and the newest verified one
    assert 50 in {c.id for c in delete}  # an older verified one is not protected


def test_stores_rotate_independently() -> None:
    backups = _daily(5, store="ledger") + [
        Candidate(id=100 + c.id, store="redis", finished_at=c.finished_at, verified=False) for c in _daily(5)
    ]

    keep, _ = plan_rotation(backups, Retention(daily=2, weekly=0, monthly=0))

    assert sorted(c.id for c in keep) == [0, 1, 100, 101]


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="weekly must not be negative"):
        Retention(weekly=-1)


def test_first_difference_names_where_and_both_values() -> None:
    recorded = {"tables": {"public.trades": {"rows": 40, "md5": "a"}, "public.users": {"rows": 1, "md5": "b"}}}

    assert first_difference(recorded, recorded) is None
    assert (
        first_difference(
            recorded, {"tables": {"public.trades": {"rows": 39, "md5": "a"}, "public.users": {"rows": 1, "md5": "b"}}}
        )
        == "tables public.trades rows: restored 39, backup time had 40"
    )
    assert first_difference(recorded, {"tables": {"public.trades": recorded["tables"]["public.trades"]}}) == (
        "tables public.users: missing from the restored copy"
    )
