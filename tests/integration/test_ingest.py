"""Ingestion end to end against the real stores: source -> quality gate -> candle store -> Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ingest import ingest_range
from marketkeeper.ledger import DataQualityRun, QuarantinedCandle, SystemEvent, create_ledger_engine, migrate
from marketkeeper.quality import GateResult, QualityGateError, check_candles
from marketkeeper.redis_client import RedisClient
from marketkeeper.sources import SyntheticSource
from marketkeeper.sources.base import CandleBatch, CandleSource, SourceError
from marketkeeper.stores.base import CandleStore
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from marketkeeper.stores.sql import SQLCandleStore
from tests.conftest import INFLUXDB_TEST_DB

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 6, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
KEY = SeriesKey.of("binance", "BTC/USDT", "1m")


@pytest.fixture(scope="module")
def ledger(pg_url: str) -> Iterator[sa.Engine]:
    migrate.upgrade(pg_url)
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _clean_ledger(ledger: sa.Engine) -> Iterator[None]:
    yield
    with ledger.begin() as conn:
        for table in ("quarantined_candles", "data_quality_runs", "system_events", "candles"):
            conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 - constant table names


@pytest.fixture(params=["sql", "influxdb"])
def store(request: pytest.FixtureRequest, ledger: sa.Engine) -> Iterator[CandleStore]:
    if request.param == "sql":
        yield SQLCandleStore(ledger)
    else:
        client = request.getfixturevalue("influxdb_client")
        yield InfluxDBCandleStore(client)


class Tampered(CandleSource):
    """The synthetic source with a hand-made defect applied to each batch (a broken exchange feed)."""

    def __init__(self, damage: Callable[[pd.DataFrame], pd.DataFrame], seed: int = 7) -> None:
        self.inner = SyntheticSource(seed, clock=lambda: NOW)
        self.damage = damage

    @property
    def name(self) -> str:
        return "tampered"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        for batch in self.inner.fetch_batches(key, start, end):
            yield CandleBatch(self.damage(batch.frame.copy()), batch.rejects)


def snapshot(store: CandleStore, key: SeriesKey = KEY) -> pd.DataFrame:
    return store.read(key, T0 - timedelta(days=1), T0 + timedelta(days=3))


def run(store: CandleStore | DiesAfterFirstWrite, ledger: sa.Engine, source: CandleSource, **kw: object) -> object:
    return ingest_range(
        KEY,
        T0,
        T0 + timedelta(hours=6),
        source=source,
        store=store,
        ledger=ledger,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


def test_rerunning_an_interval_leaves_the_stores_exactly_as_before(store: CandleStore, ledger: sa.Engine) -> None:
    source = SyntheticSource(1, clock=lambda: NOW)
    first = run(store, ledger, source)
    assert first.written == 360 and first.quarantined == 0  # type: ignore[attr-defined]
    before = snapshot(store)
    of_key = (DataQualityRun.exchange == KEY.exchange, DataQualityRun.symbol == KEY.symbol)
    with ledger.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(DataQualityRun).where(*of_key)) == 1  # 1 window

    again = run(store, ledger, source, window=100)  # another window size must not matter either
    assert again.written == 360  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(snapshot(store), before)
    with ledger.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(QuarantinedCandle)) == 0
        # Each checked window is recorded as its own run: 1 before, then 4 windows of at most 100 candles.
        runs = conn.execute(
            sa.select(DataQualityRun.range_start, DataQualityRun.range_end, DataQualityRun.rows_checked).where(*of_key)
        )
        assert sorted(runs) == sorted(
            [(T0, T0 + timedelta(hours=6), 360)]
            + [
                (T0 + timedelta(minutes=m), T0 + timedelta(minutes=min(m + 100, 360)), min(100, 360 - m))
                for m in range(0, 360, 100)
            ]
        )


def test_bad_rows_are_quarantined_with_their_expectation_not_dropped(store: CandleStore, ledger: sa.Engine) -> None:
    def damage(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[3, "close"] = np.nan
        frame.loc[5, "open"] = -1.0
        frame.loc[8, "high"] = frame.loc[8, "low"] - 1  # high < low
        return frame

    report = run(store, ledger, Tampered(damage), max_failed_fraction=0.5)
    assert report.quarantined == 3  # type: ignore[attr-defined]
    assert report.written == 360 - 3  # type: ignore[attr-defined]
    assert len(snapshot(store)) == 357
    with ledger.connect() as conn:
        rows = conn.execute(sa.select(QuarantinedCandle.open_time, QuarantinedCandle.failed_expectation)).all()
    failed = {r.open_time: r.failed_expectation for r in rows}
    assert set(failed) == {T0 + timedelta(minutes=m) for m in (3, 5, 8)}
    assert "not_be_null" in failed[T0 + timedelta(minutes=3)]

    again = run(store, ledger, Tampered(damage), max_failed_fraction=0.5)
    assert again.quarantined == 3  # type: ignore[attr-defined]
    with ledger.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(QuarantinedCandle)) == 3


def test_a_window_over_the_threshold_fails_naming_market_range_and_expectation(
    store: CandleStore, ledger: sa.Engine
) -> None:
    def damage(frame: pd.DataFrame) -> pd.DataFrame:
        frame["volume"] = -frame["volume"]
        return frame

    with pytest.raises(QualityGateError) as error:
        run(store, ledger, Tampered(damage), max_failed_fraction=0.01)
    message = str(error.value)
    assert "binance" in message and "BTC/USDT" in message
    assert "2024-05-06T00:00:00" in message
    assert "volume" in message
    assert len(snapshot(store)) == 0  # nothing of the failing window was written
    with ledger.connect() as conn:  # but the evidence was
        assert conn.scalar(sa.select(sa.func.count()).select_from(QuarantinedCandle)) > 0


def test_redis_down_still_stores_candles_and_records_a_system_event(store: CandleStore, ledger: sa.Engine) -> None:
    dead = CandleCache(RedisClient("redis://127.0.0.1:1/0", socket_timeout=0.3))
    report = run(store, ledger, SyntheticSource(2, clock=lambda: NOW), cache=dead)
    assert report.written == 360  # type: ignore[attr-defined]
    assert report.cache_errors  # type: ignore[attr-defined]
    assert len(snapshot(store)) == 360
    with ledger.connect() as conn:
        events = conn.execute(sa.select(SystemEvent.event_type, SystemEvent.symbol)).all()
    assert [(e.event_type, e.symbol) for e in events] == [("cache_update_failed", "BTC/USDT")]


def test_redis_receives_latest_candle_and_watermark(
    store: CandleStore, ledger: sa.Engine, redis_url: str, redis_prefix: str
) -> None:
    cache = CandleCache(RedisClient(redis_url, prefix=redis_prefix))
    run(store, ledger, SyntheticSource(3, clock=lambda: NOW), cache=cache)
    latest = cache.latest(KEY)
    assert latest is not None and latest.open_time == T0 + timedelta(hours=5, minutes=59)
    assert cache.watermark(KEY) == T0 + timedelta(hours=6)


class DiesAfterFirstWrite:
    """The real store for the first write, then the same store on a dead server: a crash mid-run."""

    def __init__(self, healthy: CandleStore, dead: CandleStore) -> None:
        self.healthy, self.dead, self.writes = healthy, dead, 0

    @property
    def name(self) -> str:
        return self.healthy.name

    def write(self, key: SeriesKey, frame: pd.DataFrame) -> int:
        self.writes += 1
        return (self.healthy if self.writes == 1 else self.dead).write(key, frame)


def dead_store(kind: str, ledger: sa.Engine) -> CandleStore:
    if kind == "sql":
        return SQLCandleStore(create_ledger_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"))
    return InfluxDBCandleStore(InfluxDBClient("http://127.0.0.1:1", database=INFLUXDB_TEST_DB, max_retries=0))


def test_a_store_down_mid_run_fails_the_run_and_a_retry_completes_without_duplicates(
    store: CandleStore, ledger: sa.Engine
) -> None:
    source = SyntheticSource(4, clock=lambda: NOW)
    crashing = DiesAfterFirstWrite(
        store, dead_store("sql" if isinstance(store, SQLCandleStore) else "influxdb", ledger)
    )
    with pytest.raises(MarketkeeperError) as error:
        run(crashing, ledger, source, window=120)
    assert store.name.split(":")[0].lower() in str(error.value).lower() or "unreachable" in str(error.value)
    assert len(snapshot(store)) == 120  # the first window landed, nothing after it

    retry = run(store, ledger, source, window=120)
    assert retry.written == 360  # type: ignore[attr-defined]
    stored = snapshot(store)
    assert len(stored) == 360 and stored["open_time"].is_unique


def test_start_after_end_is_refused_with_a_clear_error(store: CandleStore, ledger: sa.Engine) -> None:
    with pytest.raises(MarketkeeperError, match="start"):
        ingest_range(KEY, T0, T0 - timedelta(hours=1), source=SyntheticSource(1), store=store, ledger=ledger, now=NOW)


# --- the check-ahead worker: windows are fetched and checked one ahead of the write ------------------------


class Counting(CandleSource):
    """The synthetic source, counting the windows asked for; a fetch starting at ``broken`` raises."""

    def __init__(self, seed: int, broken: datetime | None = None) -> None:
        self.inner, self.broken = SyntheticSource(seed, clock=lambda: NOW), broken
        self.calls: list[datetime] = []

    @property
    def name(self) -> str:
        return "counting"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        self.calls.append(start)
        if start == self.broken:
            raise SourceError("the exchange answered 502", source=self.name, key=key, start=start, end=end)
        yield from self.inner.fetch_batches(key, start, end)


def checking_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "marketkeeper-ingest-check"]


def test_progress_is_reported_after_every_window_in_order(store: CandleStore, ledger: sa.Engine) -> None:
    seen: list[tuple[int, datetime | None]] = []
    run(store, ledger, SyntheticSource(5, clock=lambda: NOW), window=100, progress=lambda r: seen.append(
        (r.written, r.last_written)
    ))  # fmt: skip
    assert seen == [(written, T0 + timedelta(minutes=written - 1)) for written in (100, 200, 300, 360)]
    assert not checking_threads()


def test_a_source_failing_mid_run_fails_it_after_the_earlier_windows_are_stored(
    store: CandleStore, ledger: sa.Engine
) -> None:
    source = Counting(6, broken=T0 + timedelta(minutes=240))
    with pytest.raises(SourceError, match="502"):
        run(store, ledger, source, window=120)
    assert len(snapshot(store)) == 240  # windows 1 and 2 were checked, recorded and written; nothing after
    with ledger.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(DataQualityRun)) == 2
    assert not checking_threads()


def test_a_failed_write_stops_the_worker_one_window_ahead_at_most(store: CandleStore, ledger: sa.Engine) -> None:
    source = Counting(4)
    crashing = DiesAfterFirstWrite(
        store, dead_store("sql" if isinstance(store, SQLCandleStore) else "influxdb", ledger)
    )
    with pytest.raises(MarketkeeperError):
        run(crashing, ledger, source, window=30)  # 12 windows
    # Window 1 written, 2 failed to write; the worker may have started on window 3 during that write, no further.
    assert len(source.calls) in (2, 3)
    assert not checking_threads()
    assert len(snapshot(store)) == 30
    with ledger.connect() as conn:
        # Evidence is recorded by the writer, in order, for the windows it took: 1 and 2 (whose write failed).
        assert conn.scalar(sa.select(sa.func.count()).select_from(DataQualityRun)) == 2


def test_every_stored_candle_went_through_the_gate(
    store: CandleStore, ledger: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marketkeeper.ingest as ingest

    checked: list[pd.DataFrame] = []

    def spy(*args: object, **kwargs: object) -> GateResult:
        result = check_candles(*args, **kwargs)  # type: ignore[arg-type]
        checked.append(result.passed)
        return result

    monkeypatch.setattr(ingest, "check_candles", spy)
    written: list[pd.DataFrame] = []

    class Recording:
        name = store.name

        def write(self, key: SeriesKey, frame: pd.DataFrame) -> int:
            written.append(frame)
            return store.write(key, frame)

    run(Recording(), ledger, SyntheticSource(8, clock=lambda: NOW), window=50)  # type: ignore[arg-type]
    assert len(written) == len(checked) == 8
    assert all(w is c for w, c in zip(written, checked, strict=True))  # the gate's own passed frames, unchanged
