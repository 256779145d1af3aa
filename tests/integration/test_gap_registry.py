"""The gap registry's life cycle in the real ledger (PostgreSQL and SQLite): every status and transition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from marketkeeper.gaps import Gap
from marketkeeper.gaps.registry import (
    RetryPolicy,
    due_gaps,
    list_gaps,
    record_detection,
    record_empty,
    record_failure,
    record_remaining,
)
from marketkeeper.ledger import CandleGap, GapStatus, Market, create_ledger_engine, session_scope

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)
M = timedelta(minutes=1)
WINDOW = (T0, T0 + 100 * M)
NOW = datetime(2024, 2, 1, tzinfo=UTC)
EXCHANGE = "gapregtest"


def gap(a: int, b: int) -> Gap:
    return Gap(T0 + a * M, T0 + b * M, b - a)


@pytest.fixture
def engine(ledger_url: str) -> Iterator[Engine]:
    engine = create_ledger_engine(ledger_url)
    yield engine
    with session_scope(engine) as session:
        session.execute(sa.delete(Market).where(Market.exchange == EXCHANGE))
    engine.dispose()


@pytest.fixture
def market(engine: Engine) -> Market:
    with session_scope(engine) as session:
        row = Market(exchange=EXCHANGE, symbol="BTC/USDT", base_timeframe="1m")
        session.add(row)
        session.flush()
    return row


def rows(engine: Engine, market: Market) -> list[tuple[int, int, GapStatus]]:
    """The registry as (start minute, end minute, status), ordered."""
    with session_scope(engine) as session:
        found = session.scalars(
            sa.select(CandleGap).where(CandleGap.market_id == market.id).order_by(CandleGap.start, CandleGap.end)
        ).all()
        return [((g.start - T0) // M, (g.end - T0) // M, g.status) for g in found]


def detect(engine: Engine, market: Market, gaps: list[Gap], window: tuple[datetime, datetime] = WINDOW) -> None:
    with session_scope(engine) as session:
        record_detection(session, session.get_one(Market, market.id), "1m", gaps, window, now=NOW)


def test_detection_records_each_hole_once(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(10, 12), gap(50, 60)])
    detect(engine, market, [gap(10, 12), gap(50, 60)])
    assert rows(engine, market) == [(10, 12, GapStatus.OPEN), (50, 60, GapStatus.OPEN)]
    with session_scope(engine) as session:
        listed = list_gaps(session, exchange=EXCHANGE)
        assert [(g.missing_count, g.first_seen) for _, g in listed] == [(2, NOW), (10, NOW)]


def test_a_hole_filled_by_any_path_is_marked_filled(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(10, 12), gap(50, 60)])
    detect(engine, market, [gap(50, 60)])
    assert rows(engine, market) == [(10, 12, GapStatus.FILLED), (50, 60, GapStatus.OPEN)]
    with session_scope(engine) as session:
        filled = session.scalars(sa.select(CandleGap).where(CandleGap.status == GapStatus.FILLED)).one()
        assert filled.resolved_at == NOW


def test_a_shrunk_hole_is_partially_filled_and_its_rest_split_into_open_rows(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(50, 60)])
    with session_scope(engine) as session:
        session.execute(sa.update(CandleGap).values(first_seen=T0, attempts=2))
    detect(engine, market, [gap(50, 52), gap(55, 60)])
    assert rows(engine, market) == [
        (50, 52, GapStatus.OPEN),
        (50, 60, GapStatus.PARTIALLY_FILLED),
        (55, 60, GapStatus.OPEN),
    ]
    with session_scope(engine) as session:
        children = session.scalars(sa.select(CandleGap).where(CandleGap.status == GapStatus.OPEN)).all()
        assert {(c.first_seen, c.attempts, c.missing_count) for c in children} == {(T0, 0, 2), (T0, 0, 5)}
    # Idempotent afterwards too.
    detect(engine, market, [gap(50, 52), gap(55, 60)])
    assert len(rows(engine, market)) == 3


def test_only_the_part_of_a_hole_inside_the_window_is_judged(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(90, 100)])
    detect(engine, market, [], window=(T0, T0 + 95 * M))
    assert rows(engine, market) == [(90, 100, GapStatus.PARTIALLY_FILLED), (95, 100, GapStatus.OPEN)]
    detect(engine, market, [], window=(T0, T0 + 50 * M))
    assert rows(engine, market)[-1] == (95, 100, GapStatus.OPEN)


def test_a_hole_that_grows_keeps_its_row_and_gains_a_neighbour(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(10, 12)])
    detect(engine, market, [gap(10, 15)])
    assert rows(engine, market) == [(10, 12, GapStatus.OPEN), (12, 15, GapStatus.OPEN)]


def test_a_hole_that_reappears_reuses_its_resolved_row(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(10, 12)])
    detect(engine, market, [])
    detect(engine, market, [gap(10, 12)])
    assert rows(engine, market) == [(10, 12, GapStatus.OPEN)]


def test_empty_answers_lead_to_source_empty_which_rests_until_asked(engine: Engine, market: Market) -> None:
    policy = RetryPolicy(source_empty_after=2)
    detect(engine, market, [gap(10, 12)])
    with session_scope(engine) as session:
        row = session.scalars(sa.select(CandleGap).where(CandleGap.market_id == market.id)).one()
        record_empty(session, row, policy=policy, now=NOW)
        assert (row.status, row.attempts) == (GapStatus.OPEN, 1)
        assert due_gaps(session, market=row.market, now=NOW, policy=policy) == [row]
        record_empty(session, row, policy=policy, now=NOW)
        assert (row.status, row.attempts, row.last_attempt) == (GapStatus.SOURCE_EMPTY, 2, NOW)
        assert due_gaps(session, market=row.market, now=NOW + timedelta(days=1), policy=policy) == []
        assert due_gaps(
            session, market=row.market, now=NOW + timedelta(days=1), policy=policy, retry_source_empty=True
        ) == [row]
        assert due_gaps(session, market=row.market, now=NOW + timedelta(days=31), policy=policy) == [row]
    # A later detection that still sees the hole keeps it source_empty (visible, not reopened).
    detect(engine, market, [gap(10, 12)])
    assert rows(engine, market) == [(10, 12, GapStatus.SOURCE_EMPTY)]


def test_failures_back_off_exponentially(engine: Engine, market: Market) -> None:
    policy = RetryPolicy(failed_backoff=timedelta(hours=1))
    detect(engine, market, [gap(10, 12)])
    with session_scope(engine) as session:
        row = session.scalars(sa.select(CandleGap).where(CandleGap.market_id == market.id)).one()
        record_failure(session, row, RuntimeError("exchange said 502"), now=NOW)
        assert row.status == GapStatus.FAILED and row.last_error == "RuntimeError: exchange said 502"
        assert due_gaps(session, market=row.market, now=NOW + timedelta(minutes=59), policy=policy) == []
        assert due_gaps(session, market=row.market, now=NOW + timedelta(hours=1), policy=policy) == [row]
        record_failure(session, row, "again", now=NOW)
        record_failure(session, row, "and again", now=NOW)
        assert row.attempts == 3
        assert due_gaps(session, market=row.market, now=NOW + timedelta(hours=3, minutes=59), policy=policy) == []
        assert due_gaps(session, market=row.market, now=NOW + timedelta(hours=4), policy=policy) == [row]


def test_a_backfill_outcome_fills_or_splits_a_row(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(10, 20), gap(30, 40)])
    with session_scope(engine) as session:
        first, second = session.scalars(
            sa.select(CandleGap).where(CandleGap.market_id == market.id).order_by(CandleGap.start)
        ).all()
        record_failure(session, first, "boom", now=NOW)
        record_remaining(session, first, [], now=NOW)
        assert (first.status, first.attempts, first.last_error) == (GapStatus.FILLED, 2, None)
        report = record_remaining(session, second, [gap(35, 40)], now=NOW)
        assert second.status == GapStatus.PARTIALLY_FILLED
        assert [(g.start, g.end, g.status) for g in report.opened] == [(T0 + 35 * M, T0 + 40 * M, GapStatus.OPEN)]
    assert rows(engine, market) == [
        (10, 20, GapStatus.FILLED),
        (30, 40, GapStatus.PARTIALLY_FILLED),
        (35, 40, GapStatus.OPEN),
    ]


def test_due_gaps_filters_by_range_and_timeframe(engine: Engine, market: Market) -> None:
    detect(engine, market, [gap(10, 12), gap(50, 60)])
    with session_scope(engine) as session:
        within = due_gaps(
            session,
            market=session.get_one(Market, market.id),
            now=NOW,
            within=(T0 + 55 * M, T0 + 70 * M),
            timeframe="1m",
        )
        assert [(g.start, g.end) for g in within] == [(T0 + 50 * M, T0 + 60 * M)]
        assert due_gaps(session, market=session.get_one(Market, market.id), now=NOW, timeframe="1h") == []
