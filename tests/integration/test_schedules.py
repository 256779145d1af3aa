"""Hourly ``ohlcv_ingest`` runs, simulated as the task runs them, ingest every candle of every timeframe once.

Each run does what the DAG's ``ingest`` task does: :func:`~marketkeeper.airflow.ingestion.interval_for` turns
its data interval into the open times of the candles that closed in it, then
:func:`~marketkeeper.services.ingest.ingest_series` ingests them, with a synthetic source whose clock is the
run's data interval end (the moment the run happens). The stores are real: the SQL store on PostgreSQL, and
InfluxDB for one timeframe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import marketkeeper.ingest as ingest_module
from marketkeeper.airflow.ingestion import interval_for
from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ingest import IngestReport
from marketkeeper.ledger import DataQualityRun, migrate
from marketkeeper.markets import MarketSpec
from marketkeeper.services.ingest import IngestRequest, closed_in_interval, ingest_series
from marketkeeper.sources import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.timeframes import Timeframe
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

pytestmark = pytest.mark.integration

EXCHANGE = "schedtest"
HOUR = timedelta(hours=1)
TWO_DAYS = (datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 8, tzinfo=UTC))
TWO_MONTHS = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC))


def hourly(span: tuple[datetime, datetime]) -> list[tuple[datetime, datetime]]:
    """The data intervals of an hourly schedule over ``span``."""
    start, end = span
    return [(start + i * HOUR, start + (i + 1) * HOUR) for i in range((end - start) // HOUR)]


def market(timeframe: str, seed: int) -> MarketSpec:
    return MarketSpec(exchange=EXCHANGE, symbol="BTC/USDT", base_timeframe=timeframe, source=f"synthetic:{seed}")


@dataclass
class Scheduler:
    """Runs one hourly interval as the DAG task does and counts the quality-gate checks it makes."""

    config: StoreConfig
    spec: MarketSpec
    seed: int
    gate_calls: int = 0

    def planned(self, interval: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
        context: dict[str, Any] = {"params": {}, "data_interval_start": interval[0], "data_interval_end": interval[1]}
        return interval_for(context, self.spec.model_dump(mode="json"))

    def run(self, interval: tuple[datetime, datetime]) -> IngestReport:
        lo, hi = self.planned(interval)
        run_at = interval[1]
        return ingest_series(
            self.config,
            IngestRequest(self.spec, lo, hi),
            source=SyntheticSource(self.seed, clock=lambda: run_at),
            now=run_at,
        )

    def snapshot(self, span: tuple[datetime, datetime]) -> pd.DataFrame:
        tf = self.spec.base_timeframe
        with StoreSet.open(self.config) as stores:
            return stores.candles.read(self.spec.key, tf.add(span[0], -3), tf.add(span[1], 3))

    def count(self, lo: datetime, hi: datetime) -> int:
        with StoreSet.open(self.config) as stores:
            return stores.candles.count(self.spec.key, lo, hi)


@pytest.fixture(scope="module")
def migrated(pg_url: str) -> str:
    migrate.upgrade(pg_url)
    return pg_url


@pytest.fixture(autouse=True)
def _clean(migrated: str) -> Iterator[None]:
    yield
    engine = sa.create_engine(migrated)
    with engine.begin() as conn:
        for table in ("quarantined_candles", "data_quality_runs", "candles", "markets"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
    engine.dispose()


@pytest.fixture
def gate_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each quality-gate check (a Great Expectations checkpoint) ``ingest_range`` made."""
    checked: list[int] = []
    real = ingest_module.check_candles

    def spy(key: SeriesKey, frame: pd.DataFrame, **kw: Any) -> Any:
        checked.append(len(frame))
        return real(key, frame, **kw)

    monkeypatch.setattr(ingest_module, "check_candles", spy)
    return checked


def quality_runs(pg_url: str, key: SeriesKey) -> int:
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        count = conn.scalar(
            sa.select(sa.func.count())
            .select_from(DataQualityRun)
            .where(DataQualityRun.exchange == key.exchange, DataQualityRun.timeframe == str(key.timeframe))
        )
    engine.dispose()
    return int(count or 0)


def config_for(backend: str, pg_url: str, request: pytest.FixtureRequest) -> StoreConfig:
    if backend == "sql":
        return StoreConfig(ledger_url=pg_url)
    request.getfixturevalue("influxdb_client")  # creates the test database, drops it afterwards
    return StoreConfig(ledger_url=pg_url, influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB))


def assert_tiles(planned: list[tuple[datetime, datetime]], tf: Timeframe, span: tuple[datetime, datetime]) -> None:
    """Consecutive runs ask for consecutive open times: no candle asked twice, none left out."""
    assert planned[0][0] == tf.floor(span[0])
    assert planned[-1][1] == tf.floor(span[1])
    for (_, hi), (lo, _) in pairwise(planned):
        assert hi == lo


# Over two days of hourly runs: every 1m and 1h candle, 12 4h and 2 1d candles, each ingested once.
@pytest.mark.parametrize(
    ("timeframe", "backend", "expected"),
    [("1m", "sql", 2880), ("1h", "sql", 48), ("4h", "sql", 12), ("4h", "influxdb", 12), ("1d", "sql", 2)],
)
def test_two_days_of_hourly_runs_ingest_every_candle_exactly_once(
    timeframe: str,
    backend: str,
    expected: int,
    migrated: str,
    gate_spy: list[int],
    request: pytest.FixtureRequest,
) -> None:
    scheduler = Scheduler(config_for(backend, migrated, request), market(timeframe, seed=11), seed=11)
    tf = scheduler.spec.base_timeframe
    intervals = hourly(TWO_DAYS)
    assert len(intervals) == 48
    span = (tf.floor(TWO_DAYS[0]), tf.floor(TWO_DAYS[1]))
    assert tf.count(*span) == expected

    planned = [scheduler.planned(i) for i in intervals]
    assert_tiles(planned, tf, TWO_DAYS)
    reports = [scheduler.run(i) for i in intervals]

    non_empty = [n for n, (lo, hi) in enumerate(planned) if lo < hi]
    assert len(non_empty) == (48 if tf.duration <= HOUR else expected)
    for n, report in enumerate(reports):
        lo, hi = planned[n]
        # Every candle asked for has closed by the run's end, so the run gets all of them.
        assert (report.fetched, report.written, report.quarantined) == (tf.count(lo, hi),) * 2 + (0,)
    assert sum(r.written for r in reports) == expected
    assert scheduler.count(*span) == expected
    # An interval in which no candle closes runs no quality check (no Great Expectations checkpoint).
    assert len(gate_spy) == len(non_empty)
    assert quality_runs(migrated, scheduler.spec.key) == len(non_empty)

    before = scheduler.snapshot(span)
    assert len(before) == expected and before["open_time"].is_unique
    # Re-running an interval (a cleared task, an overlapping backfill) writes what it wrote and changes nothing:
    # the first interval, the one where the first 4h candle closes, where the first 1d closes, and the last.
    for n in (0, 3, 23, 47):
        again = scheduler.run(intervals[n])
        assert again.written == reports[n].written
        pd.testing.assert_frame_equal(scheduler.snapshot(span), before)


# Over two months of hourly runs (1464 intervals): 9 weekly and 2 monthly candles, each ingested once.
@pytest.mark.parametrize(("timeframe", "expected"), [("1w", 9), ("1M", 2)])
def test_two_months_of_hourly_runs_ingest_every_weekly_and_monthly_candle_once(
    timeframe: str, expected: int, migrated: str, gate_spy: list[int]
) -> None:
    scheduler = Scheduler(StoreConfig(ledger_url=migrated), market(timeframe, seed=12), seed=12)
    tf = scheduler.spec.base_timeframe
    intervals = hourly(TWO_MONTHS)
    assert len(intervals) == 1464
    span = (tf.floor(TWO_MONTHS[0]), tf.floor(TWO_MONTHS[1]))
    assert tf.count(*span) == expected

    planned = [scheduler.planned(i) for i in intervals]
    assert_tiles(planned, tf, TWO_MONTHS)
    assert planned == [closed_in_interval(tf, *i) for i in intervals]  # what the task computes, no I/O
    non_empty = [n for n, (lo, hi) in enumerate(planned) if lo < hi]
    # Exactly one run per candle asks for it: the run at whose end the candle closes.
    assert [intervals[n][1] for n in non_empty] == [tf.next_open(t) for t in tf.range(*span)]
    assert all(tf.count(*planned[n]) == 1 for n in non_empty)

    # Running all 1464 would open the stores 1464 times; run every non-empty one and a few empty ones.
    empty_sample = [n for n in (0, 1, 500, 1463) if n not in non_empty]
    reports = {n: scheduler.run(intervals[n]) for n in sorted(non_empty + empty_sample)}
    for n in empty_sample:
        assert (reports[n].fetched, reports[n].written) == (0, 0)
    assert sum(r.written for r in reports.values()) == expected
    assert scheduler.count(*span) == expected
    assert len(gate_spy) == len(non_empty)

    before = scheduler.snapshot(span)
    assert len(before) == expected
    for n in non_empty:
        assert scheduler.run(intervals[n]).written == 1
        pd.testing.assert_frame_equal(scheduler.snapshot(span), before)


def test_a_run_before_a_candle_closes_does_not_see_it_and_the_run_at_its_close_does(
    migrated: str, gate_spy: list[int]
) -> None:
    """The clock matters: a 4h candle still open at a run's end is asked for by no run but the closing one."""
    scheduler = Scheduler(StoreConfig(ledger_url=migrated), market("4h", seed=13), seed=13)
    opening = datetime(2024, 5, 6, 4, tzinfo=UTC)
    for hour in range(5, 8):  # the runs ending 05:00, 06:00, 07:00: the 04:00 candle is still open
        interval = (opening + (hour - 5) * HOUR, opening + (hour - 4) * HOUR)
        assert scheduler.planned(interval)[0] == scheduler.planned(interval)[1]
        assert scheduler.run(interval).written == 0
    assert scheduler.count(opening, opening + 4 * HOUR) == 0
    closing = (opening + 3 * HOUR, opening + 4 * HOUR)
    assert scheduler.planned(closing) == (opening, opening + 4 * HOUR)
    report = scheduler.run(closing)
    assert (report.written, report.first_written, report.last_written) == (1, opening, opening)
    assert len(gate_spy) == 1
