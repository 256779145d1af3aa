"""Backfill against the real stores: only holes are fetched, each gap's outcome recorded, one writer per series."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.gaps.backfill import BackfillError, backfill_series, detect_series
from marketkeeper.gaps.registry import RetryPolicy
from marketkeeper.ingest import Pipeline, ingest_range
from marketkeeper.ledger import CandleGap, GapStatus, Market, create_ledger_engine, session_scope
from marketkeeper.locks import SeriesLockedError
from marketkeeper.markets import MarketSpec
from marketkeeper.redis_client import RedisClient
from marketkeeper.services.gaps import BackfillRequest, backfill_market
from marketkeeper.services.policy import LockPolicy
from marketkeeper.sources import SyntheticSource
from marketkeeper.sources.base import CandleBatch, CandleSource, SourceUnavailableError
from marketkeeper.store_set import StoreConfig
from marketkeeper.stores.base import CandleStore
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from marketkeeper.stores.sql import SQLCandleStore

pytestmark = pytest.mark.integration

EXCHANGE = "backfilltest"
KEY = SeriesKey.of(EXCHANGE, "BTC/USDT", "1m")
T0 = datetime(2024, 5, 6, tzinfo=UTC)
END = T0 + timedelta(minutes=300)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
M = timedelta(minutes=1)
HOLES = [(T0 + 20 * M, T0 + 30 * M), (T0 + 100 * M, T0 + 101 * M), (T0 + 200 * M, T0 + 240 * M)]


class Recording(CandleSource):
    """Wraps a source: records every range asked for, optionally raises first or sleeps (a slow exchange)."""

    def __init__(self, inner: CandleSource, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.inner = inner
        self.fail_first = fail_first
        self.delay = delay
        self.calls: list[tuple[datetime, datetime]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        self.calls.append((start, end))
        if self.delay:
            time.sleep(self.delay)
        if len(self.calls) <= self.fail_first:
            raise SourceUnavailableError("exchange timed out", source=self.name, key=key, start=start, end=end)
        yield from self.inner.fetch_batches(key, start, end)


def synthetic(holes: list[tuple[datetime, datetime]] | None = None) -> SyntheticSource:
    return SyntheticSource(11, holes=holes or [], clock=lambda: NOW)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[sa.Engine]:
    engine = create_ledger_engine(ledger_url)
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.delete(Market).where(Market.exchange == EXCHANGE))
        for table in ("quarantined_candles", "data_quality_runs", "candles"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
    engine.dispose()


@pytest.fixture
def store(ledger: sa.Engine) -> CandleStore:
    return SQLCandleStore(ledger)


def seed(store: CandleStore, ledger: sa.Engine) -> None:
    """The series over [T0, END) with HOLES left out, as a flaky ingestion would leave it."""
    ingest_range(KEY, T0, END, source=synthetic(HOLES), store=store, ledger=ledger, now=NOW)
    with session_scope(ledger) as session:
        session.add(Market(exchange=KEY.exchange, symbol=KEY.symbol, base_timeframe="1m", first_date=T0.date()))


def registry(ledger: sa.Engine) -> list[tuple[int, int, GapStatus, int]]:
    with session_scope(ledger) as session:
        found = session.scalars(
            sa.select(CandleGap).join(Market).where(Market.exchange == EXCHANGE).order_by(CandleGap.start)
        ).all()
        return [((g.start - T0) // M, (g.end - T0) // M, g.status, g.attempts) for g in found]


def backfill(
    store: CandleStore, ledger: sa.Engine, source: CandleSource, *, now: datetime = NOW, **kw: object
) -> object:
    pipeline = Pipeline(source, store, ledger, now=now)
    return backfill_series(KEY, T0, END, pipeline, chunk=25, **kw)  # type: ignore[arg-type]


def test_detection_finds_and_records_the_holes(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    found = detect_series(KEY, store=store, ledger=ledger, end=END, now=NOW)
    assert [(g.start, g.end, g.missing) for g in found.gaps] == [(a, b, (b - a) // M) for a, b in HOLES]
    assert registry(ledger) == [
        (20, 30, GapStatus.OPEN, 0),
        (100, 101, GapStatus.OPEN, 0),
        (200, 240, GapStatus.OPEN, 0),
    ]


def test_only_the_holes_are_fetched_and_every_gap_ends_filled(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    source = Recording(synthetic())
    report = backfill(store, ledger, source)
    assert sum((b - a) // M for a, b in source.calls) == 51  # the 51 missing candles, in chunks of <= 25
    assert all(any(h[0] <= a and b <= h[1] for h in HOLES) for a, b in source.calls)
    assert (report.filled, report.written, report.missing_after) == (3, 51, 0)  # type: ignore[attr-defined]
    assert [status for *_, status, _ in registry(ledger)] == [GapStatus.FILLED] * 3
    expected = next(iter(synthetic().fetch_batches(KEY, T0, END))).frame
    stored = store.read(KEY, T0, END)
    assert len(stored) == 300
    assert stored["close"].tolist() == expected["close"].tolist()
    # A second run finds nothing to do.
    again = Recording(synthetic())
    backfill(store, ledger, again)
    assert again.calls == []


def test_a_source_with_part_of_a_gap_leaves_it_partially_filled(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    report = backfill(store, ledger, synthetic([(T0 + 230 * M, T0 + 240 * M)]))
    assert (report.filled, report.partially_filled) == (2, 1)  # type: ignore[attr-defined]
    assert registry(ledger)[2:] == [(200, 240, GapStatus.PARTIALLY_FILLED, 1), (230, 240, GapStatus.OPEN, 0)]


def test_a_source_with_none_of_a_gap_ends_source_empty_and_rests(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    policy = RetryPolicy(source_empty_after=2)
    outage = [(T0 + 200 * M, T0 + 240 * M)]
    backfill(store, ledger, synthetic(outage), policy=policy)
    assert registry(ledger)[-1] == (200, 240, GapStatus.OPEN, 1)
    report = backfill(store, ledger, synthetic(outage), policy=policy)
    assert report.source_empty == 1  # type: ignore[attr-defined]
    assert registry(ledger)[-1] == (200, 240, GapStatus.SOURCE_EMPTY, 2)
    rested = Recording(synthetic())
    backfill(store, ledger, rested, policy=policy, now=NOW + timedelta(days=1))
    assert rested.calls == []
    backfill(store, ledger, rested, policy=policy, now=NOW + timedelta(days=1), retry_source_empty=True)
    assert registry(ledger)[-1] == (200, 240, GapStatus.FILLED, 3)


def test_a_source_that_fails_once_then_succeeds(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    flaky = Recording(synthetic(), fail_first=1)
    with pytest.raises(BackfillError, match=r"1 gap\(s\) failed.*exchange timed out") as caught:
        backfill(store, ledger, flaky)
    assert (caught.value.report.failed, caught.value.report.filled) == (1, 2)
    first = registry(ledger)[0]
    assert first == (20, 30, GapStatus.FAILED, 1)
    with session_scope(ledger) as session:
        assert "exchange timed out" in (
            session.scalars(sa.select(CandleGap).where(CandleGap.status == "failed")).one().last_error or ""
        )
    # Within the backoff it is left alone; after it, it is filled.
    backfill(store, ledger, flaky, now=NOW + timedelta(minutes=30))
    assert registry(ledger)[0] == first
    backfill(store, ledger, flaky, now=NOW + timedelta(hours=2))
    assert registry(ledger)[0] == (20, 30, GapStatus.FILLED, 2)


def test_force_refetches_the_whole_range(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    source = Recording(synthetic())
    report = backfill(store, ledger, source, force=True)
    assert (report.fetched, report.written, report.missing_after) == (300, 300, 0)  # type: ignore[attr-defined]
    assert [status for *_, status, _ in registry(ledger)] == [GapStatus.FILLED] * 3


def test_asset_ranges_name_what_was_written(store: CandleStore, ledger: sa.Engine) -> None:
    seed(store, ledger)
    report = backfill(store, ledger, synthetic())
    ranges = [(r.start, r.end, r.rows) for r in report.written_ranges]  # type: ignore[attr-defined]
    assert sum(rows for *_, rows in ranges) == 51
    assert ranges[0] == (T0 + 20 * M, T0 + 30 * M, 10)


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis-configured", "no-redis"])
def test_two_concurrent_backfills_of_one_series_never_write_together(
    store: CandleStore, ledger: sa.Engine, with_redis: bool, request: pytest.FixtureRequest
) -> None:
    """Through the service both CLI and DAG call: the second writer is refused, naming the holder; with the
    lock policy's wait it runs after the first and finds nothing left to do. Whether Redis is configured
    does not matter: the lock lives in the ledger every writer shares."""
    seed(store, ledger)
    url = ledger.url.render_as_string(hide_password=False)
    redis_url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    config = StoreConfig(ledger_url=url, redis=(lambda: RedisClient(redis_url, prefix=prefix)) if with_redis else None)
    market = MarketSpec.model_validate({"exchange": EXCHANGE, "symbol": KEY.symbol, "source": "synthetic:11"})
    outcomes: dict[str, object] = {}
    slow = [Recording(synthetic(), delay=0.3), Recording(synthetic(), delay=0.3)]

    def run(name: str, source: Recording) -> None:
        try:
            outcomes[name] = backfill_market(
                config, BackfillRequest(market, T0, END), now=NOW, source=source, policy=LockPolicy(wait=0.0)
            )
        except SeriesLockedError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(f"t{i}", s), name=f"backfill-{i}") for i, s in enumerate(slow)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    refused = [o for o in outcomes.values() if isinstance(o, SeriesLockedError)]
    assert len(refused) == 1, outcomes
    assert str(KEY) in str(refused[0]) and "backfill-0" in str(refused[0])
    assert slow[1].calls == []
    assert store.count(KEY, T0, END) == 300
    late = Recording(synthetic())
    backfill_market(config, BackfillRequest(market, T0, END), now=NOW, source=late, policy=LockPolicy(wait=5.0))
    assert late.calls == []


def test_backfill_into_influxdb(pg_ledger: str, request: pytest.FixtureRequest) -> None:
    ledger = create_ledger_engine(pg_ledger)
    influx = InfluxDBCandleStore(request.getfixturevalue("influxdb_client"))
    try:
        seed(influx, ledger)
        report = backfill(influx, ledger, synthetic())
        assert (report.filled, report.missing_after) == (3, 0)  # type: ignore[attr-defined]
        assert influx.count(KEY, T0, END) == 300
    finally:
        with ledger.begin() as conn:
            conn.execute(sa.delete(Market).where(Market.exchange == EXCHANGE))
            conn.execute(sa.text("DELETE FROM data_quality_runs WHERE exchange = :e"), {"e": EXCHANGE})
        ledger.dispose()
