"""The quality repository on the real ledger (PostgreSQL and SQLite): a window's quarantine replaced, not
appended to; rows refused with typed errors before anything is written; exact counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from marketkeeper.ledger import create_ledger_engine, session_scope
from marketkeeper.ledger.models import DataQualityRun, QuarantinedCandle
from marketkeeper.repositories import ValidationError, unit_of_work
from marketkeeper.repositories.quality import QualityRepository

pytestmark = pytest.mark.integration

EXCHANGE = "mk-test-quality-repo"
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture
def engine(ledger_url: str) -> Iterator[Engine]:
    engine = create_ledger_engine(ledger_url)
    yield engine
    with session_scope(engine) as session:
        session.execute(sa.delete(QuarantinedCandle).where(QuarantinedCandle.exchange == EXCHANGE))
        session.execute(sa.delete(DataQualityRun).where(DataQualityRun.exchange == EXCHANGE))
    engine.dispose()


def add_run(repo: QualityRepository, *, start: datetime = START, end: datetime = END) -> DataQualityRun:
    return repo.add_run(
        suite="candles",
        exchange=EXCHANGE,
        symbol="BTC/USDT",
        timeframe="1m",
        range_start=start,
        range_end=end,
        rows_checked=3,
        rows_failed=2,
        success=False,
        results={"source": "files"},
    )


def row(minutes: int | None, reason: str = "close is missing") -> dict[str, Any]:
    return {
        "open_time": None if minutes is None else START + timedelta(minutes=minutes),
        "raw_row": {"raw": "1,2"} if minutes is None else {"close": "NaN"},
        "failed_expectation": "expect_column_values_to_not_be_null(close)",
        "reason": reason,
    }


def test_a_window_is_replaced_and_other_sources_and_windows_are_kept(engine: Engine) -> None:
    later = END + timedelta(days=1)
    with unit_of_work(engine) as repos:
        first = add_run(repos.quality)
        assert repos.quality.replace_window_quarantine(first, source="files", rows=[row(1), row(None)]) == 2
        other = add_run(repos.quality)
        repos.quality.replace_window_quarantine(other, source="ccxt", rows=[row(1)])
        next_day = add_run(repos.quality, start=END, end=later)
        repos.quality.replace_window_quarantine(next_day, source="files", rows=[{**row(0), "open_time": END}])

    with unit_of_work(engine) as repos:
        again = add_run(repos.quality)
        repos.quality.replace_window_quarantine(again, source="files", rows=[row(5)])

    with unit_of_work(engine) as repos:
        files = repos.quality.quarantined(EXCHANGE, source="files")
        assert [(r.open_time, r.data_quality_run_id) for r in files] == [
            (START + timedelta(minutes=5), again.id),
            (END, next_day.id),
        ]
        assert repos.quality.count_quarantined(EXCHANGE, "BTC/USDT", "1m", source="ccxt") == 1
        assert repos.quality.count_quarantined(EXCHANGE) == 3
        assert repos.quality.count_runs(EXCHANGE) == 4
        assert [run.id for run in repos.quality.runs_of(EXCHANGE, "BTC/USDT", "1m")] == [
            first.id,
            other.id,
            next_day.id,
            again.id,
        ]
        assert repos.quality.count_runs(EXCHANGE, "ETH/USDT") == 0


def test_rows_without_an_open_time_are_listed_last(engine: Engine) -> None:
    with unit_of_work(engine) as repos:
        run = add_run(repos.quality)
        repos.quality.replace_window_quarantine(run, source="files", rows=[row(None), row(3), row(1)])

    with unit_of_work(engine) as repos:
        times = [r.open_time for r in repos.quality.quarantined(EXCHANGE)]
    assert times == [START + timedelta(minutes=1), START + timedelta(minutes=3), None]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        pytest.param({"colour": "red"}, "colour", id="unknown-field"),
        pytest.param({"failed_expectation": "x" * 201}, "failed_expectation", id="too-long"),
        pytest.param({"open_time": datetime(2024, 1, 1)}, "open_time", id="naive"),  # noqa: DTZ001
        pytest.param({"raw_row": None}, "raw_row", id="no-raw-row"),
    ],
)
def test_a_bad_row_is_refused_before_anything_is_written(engine: Engine, bad: dict[str, Any], field: str) -> None:
    with unit_of_work(engine) as repos:
        run = add_run(repos.quality)
        repos.quality.replace_window_quarantine(run, source="files", rows=[row(1)])

    with pytest.raises(ValidationError) as caught, unit_of_work(engine) as repos:
        again = add_run(repos.quality)
        repos.quality.replace_window_quarantine(again, source="files", rows=[row(2), {**row(3), **bad}])

    assert caught.value.field == field
    with unit_of_work(engine) as repos:
        assert repos.quality.count_runs(EXCHANGE) == 1
        assert [r.open_time for r in repos.quality.quarantined(EXCHANGE)] == [START + timedelta(minutes=1)]


def test_nul_is_a_typed_error_where_the_database_refuses_it(engine: Engine) -> None:
    # PostgreSQL refuses NUL in TEXT and JSONB; SQLite stores it. Callers escape it either way (quality.escape).
    if engine.dialect.name == "postgresql":
        with pytest.raises(ValidationError, match="refused"), unit_of_work(engine) as repos:
            run = add_run(repos.quality)
            repos.quality.replace_window_quarantine(run, source="files", rows=[row(1, reason="a\x00b")])
        return
    with unit_of_work(engine) as repos:
        run = add_run(repos.quality)
        repos.quality.replace_window_quarantine(run, source="files", rows=[row(1, reason="a\x00b")])
    with unit_of_work(engine) as repos:
        assert [r.reason for r in repos.quality.quarantined(EXCHANGE)] == ["a\x00b"]


def test_a_lone_surrogate_is_a_typed_error(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="cannot encode"), unit_of_work(engine) as repos:
        run = add_run(repos.quality)
        repos.quality.replace_window_quarantine(run, source="files", rows=[row(1, reason="a\ud800b")])


def test_negative_counts_are_refused(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="negative"), session_scope(engine) as session:
        QualityRepository(session).add_run(
            suite="candles", exchange=EXCHANGE, rows_checked=-1, rows_failed=0, success=True
        )
