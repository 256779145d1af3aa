"""Ledger maintenance on both ledgers: aged platform rows go (the dry run counts exactly those), recent ones and
unfilled gaps stay, and PostgreSQL's churning tables are vacuumed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.ledger.engine import session_scope
from marketkeeper.ledger.models import (
    AuditLog,
    CandleGap,
    DataQualityRun,
    EventSeverity,
    GapStatus,
    Market,
    QuarantinedCandle,
    SystemEvent,
)
from marketkeeper.services.maintenance import maintain_ledger
from marketkeeper.settings import Settings
from marketkeeper.store_set import StoreConfig
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

NOW = datetime(2021, 1, 1, tzinfo=UTC)
OLD = datetime(2020, 1, 1, tzinfo=UTC)  # older than every default age
RECENT = datetime(2020, 12, 31, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def own_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (
        str(request.getfixturevalue("fresh_pg_url")) if request.param == "postgresql" else f"sqlite:///{tmp_path}/l.db"
    )
    migrate.upgrade(url)
    return url


def seed(url: str) -> None:
    engine = create_ledger_engine(url)
    with session_scope(engine) as session:
        market = Market(exchange="binance", symbol="BTC/USDT", base_timeframe="1m")
        session.add(market)
        session.flush()
        for when in (OLD, RECENT):
            run = DataQualityRun(suite="candles", success=False, rows_checked=1, rows_failed=1, run_at=when)
            session.add(run)
            session.flush()
            session.add(
                QuarantinedCandle(
                    exchange="binance", symbol="BTC/USDT", timeframe="1m", raw_row={"open": -1},
                    failed_expectation="positive_prices", data_quality_run_id=run.id, quarantined_at=when,
                )
            )  # fmt: skip
            session.add(SystemEvent(event_type="x", severity=EventSeverity.INFO, message="m", timestamp=when))
            session.add(AuditLog(action="login", resource="ui", timestamp=when))
            for status, offset in ((GapStatus.FILLED, 0), (GapStatus.OPEN, 1)):
                day = 1 + offset + 2 * (when is OLD)
                session.add(
                    CandleGap(
                        market_id=market.id, timeframe="1m", start=datetime(2019, 1, day, tzinfo=UTC),
                        end=datetime(2019, 1, day + 1, tzinfo=UTC), missing_count=1440,
                        status=status, attempts=1, first_seen=when, resolved_at=when,
                    )
                )  # fmt: skip
    engine.dispose()


def counts(url: str) -> dict[str, int]:
    engine = create_ledger_engine(url)
    with engine.connect() as conn:
        tables = ("data_quality_runs", "quarantined_candles", "system_events", "candle_gaps", "audit_logs")
        out = {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables}  # noqa: S608
    engine.dispose()
    return out


def test_aged_rows_go_the_dry_run_counts_them_and_the_rest_stays(own_ledger: str) -> None:
    seed(own_ledger)
    config = StoreConfig(ledger_url=own_ledger)
    before = counts(own_ledger)

    plan = maintain_ledger(config, dry_run=True, now=NOW, settings=Settings())
    assert {name: t["rows"] for name, t in plan.tables.items()} == {
        "quarantined_candles": 1,
        "data_quality_runs": 1,
        "system_events": 1,
        "candle_gaps": 1,  # the old filled gap; the old open one is still work to do
        "audit_logs": 1,
    }
    assert counts(own_ledger) == before

    done = maintain_ledger(config, now=NOW, settings=Settings())
    assert {name: t["rows"] for name, t in done.tables.items()} == {name: t["rows"] for name, t in plan.tables.items()}
    assert counts(own_ledger) == {name: n - 1 for name, n in before.items()}
    postgres = own_ledger.startswith("postgresql")
    assert ("candles" in done.vacuumed and "system_events" in done.vacuumed) if postgres else done.vacuumed == []
    # Nothing is older any more: a second run deletes nothing.
    again = maintain_ledger(config, now=NOW, settings=Settings())
    assert all(t["rows"] == 0 for t in again.tables.values())


def test_ages_come_from_the_environment(own_ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(own_ledger)
    monkeypatch.setenv("MARKETKEEPER_KEEP_SYSTEM_EVENTS_DAYS", "1000")
    plan = maintain_ledger(StoreConfig(ledger_url=own_ledger), dry_run=True, now=NOW, settings=Settings())
    assert plan.tables["system_events"] == {"keep_days": 1000, "cutoff": "2018-04-07T00:00:00+00:00", "rows": 0}


def test_cli_maintenance_dry_run(pg_ledger: str, tmp_path: Path) -> None:
    result = run_cli(
        "maintenance", "--dry-run", env={"DATABASE_URL": pg_ledger, "MARKETKEEPER_HOME": str(tmp_path)}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("quarantined_candles: would delete ") and lines[0].endswith("older than 180 days")
    assert lines[-1].startswith("would vacuum: quarantined_candles, data_quality_runs, system_events")
