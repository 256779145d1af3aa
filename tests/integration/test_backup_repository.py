"""The backup catalog on both ledger backends: the life cycle of a row and where each store stands."""

from __future__ import annotations

import pytest

from marketkeeper.ledger import create_ledger_engine
from marketkeeper.ledger.models import BackupStatus
from marketkeeper.repositories import BackupOverview, unit_of_work

pytestmark = pytest.mark.integration


def test_newest_per_store_reports_success_drill_and_failure(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        with unit_of_work(engine) as repos:
            repos.session.execute(repos.backups.model.__table__.delete())
            old = repos.backups.start(store="ledger", kind="pg_dump-custom", location="file:///b/old.dump")
            repos.backups.succeed(old, size_bytes=10, sha256="a" * 64, location="file:///b/old.dump")
            repos.backups.drilled(old, passed=True, error=None, rto_seconds=1.5, rpo_seconds=60.0, details={})
            new = repos.backups.start(store="ledger", kind="pg_dump-custom", location="file:///b/new.dump")
            repos.backups.succeed(new, size_bytes=12, sha256="b" * 64, location="file:///b/new.dump")
            repos.backups.drilled(
                new,
                passed=False,
                error="table trades: 3 rows, 4 at backup time",
                rto_seconds=2.0,
                rpo_seconds=30.0,
                details={},
            )
            broken = repos.backups.start(store="redis", kind="redis-rdb", location="file:///b/r.rdb")
            repos.backups.fail(broken, "redis-cli --rdb exited 1: connection refused")

        with unit_of_work(engine) as repos:
            overview = repos.backups.newest_per_store()
            assert repos.backups.newest_complete("ledger").id == new.id  # type: ignore[union-attr]
            assert repos.backups.newest_verified("ledger").id == old.id  # type: ignore[union-attr]
            assert repos.backups.newest_complete("redis") is None
    finally:
        engine.dispose()

    assert set(overview) == {"ledger", "redis"}
    ledger = overview["ledger"]
    assert isinstance(ledger, BackupOverview)
    assert ledger.location == "file:///b/new.dump"
    assert ledger.last_succeeded_at is not None
    assert ledger.last_drill_status == "drill_failed"
    assert ledger.last_drill_error == "table trades: 3 rows, 4 at backup time"
    assert ledger.last_verified_at is not None and ledger.last_drill_at is not None
    assert ledger.last_verified_at <= ledger.last_drill_at
    redis = overview["redis"]
    assert redis.last_succeeded_at is None and redis.location is None and redis.last_drill_status is None
    assert redis.last_attempt_status == BackupStatus.FAILED
    assert redis.last_error == "redis-cli --rdb exited 1: connection refused"
