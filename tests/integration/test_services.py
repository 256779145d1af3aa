"""The service layer against the real PostgreSQL and Redis: what a backfill does with one gap's unexpected error,
where the Redis watermark lands, a lock lost mid-ingestion, and one policy/resolution for the CLI and the DAGs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import marketkeeper.airflow.stores as airflow_stores
import marketkeeper.services.policy as policy_module
import marketkeeper.services.writer as writer_service
from marketkeeper.airflow.ingestion import ingest_market
from marketkeeper.candle_cache import CandleCache
from marketkeeper.candles import SeriesKey
from marketkeeper.cli import app
from marketkeeper.ingest import ingest_range
from marketkeeper.ledger import CandleGap, GapStatus, Market, create_ledger_engine, migrate
from marketkeeper.locks import PostgresSeriesLock, SeriesLock, SeriesLockedError, SeriesLockLostError, series_lock
from marketkeeper.markets import MarketSpec
from marketkeeper.redis_client import RedisClient
from marketkeeper.services.gaps import BackfillError, BackfillRequest, backfill_market
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.services.markets import MARKETS_ENV, market_for, plan_markets
from marketkeeper.services.policy import LockPolicy
from marketkeeper.settings import get_settings
from marketkeeper.sources import SyntheticSource
from marketkeeper.sources.base import CandleBatch, CandleSource
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.stores.sql import SQLCandleStore

pytestmark = pytest.mark.integration

EXCHANGE = "svctest"
T0 = datetime(2024, 5, 6, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def spec_of(timeframe: str = "1m", *, symbol: str = "BTC/USDT", seed: int = 1, **kw: Any) -> MarketSpec:
    return MarketSpec(exchange=EXCHANGE, symbol=symbol, base_timeframe=timeframe, source=f"synthetic:{seed}", **kw)


@pytest.fixture(scope="module")
def migrated(pg_url: str) -> str:
    migrate.upgrade(pg_url)
    return pg_url


@pytest.fixture
def ledger(migrated: str) -> Iterator[sa.Engine]:
    engine = create_ledger_engine(migrated)
    yield engine
    with engine.begin() as conn:
        for table in ("quarantined_candles", "data_quality_runs", "candles", "markets"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
    engine.dispose()


@pytest.fixture
def config(migrated: str, ledger: sa.Engine) -> StoreConfig:
    return StoreConfig(ledger_url=migrated)


def gap_rows(ledger: sa.Engine) -> dict[tuple[datetime, datetime], CandleGap]:
    with ledger.connect() as conn:
        rows = conn.execute(sa.select(CandleGap).join(Market).where(Market.exchange == EXCHANGE)).all()
    return {(r.start, r.end): r for r in rows}


# --- (a) an unexpected error of one gap is that gap's failure ------------------------------------------------


class FailsOn(CandleSource):
    """The synthetic source, except that a fetch starting inside ``broken`` raises ``error()``."""

    def __init__(self, seed: int, broken: tuple[datetime, datetime], error: Callable[[], Exception]) -> None:
        self.inner, self.broken, self.error = SyntheticSource(seed, clock=lambda: NOW), broken, error
        self.calls: list[tuple[datetime, datetime]] = []

    @property
    def name(self) -> str:
        return "fails-on"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        self.calls.append((start, end))
        if self.broken[0] <= start < self.broken[1]:
            raise self.error()
        yield from self.inner.fetch_batches(key, start, end)


def _data_error() -> Exception:
    # What psycopg raises through SQLAlchemy for a value PostgreSQL refuses (a NUL byte in text).
    return sa.exc.DataError(
        "INSERT INTO quarantined_candles ...", {}, ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    )


@pytest.mark.parametrize(
    ("error", "name"), [(lambda: KeyError("open_time"), "KeyError"), (_data_error, "DataError")], ids=["key", "data"]
)
def test_an_unexpected_error_of_one_gap_is_recorded_on_it_with_backoff_and_the_other_gaps_are_filled(
    config: StoreConfig, ledger: sa.Engine, error: Callable[[], Exception], name: str
) -> None:
    spec = spec_of(seed=3)
    end = T0 + timedelta(hours=6)
    holes = [
        (T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=10)),
        (T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=5)),
        (T0 + timedelta(hours=4), T0 + timedelta(hours=4, minutes=30)),
    ]
    broken = holes[1]
    ingest_range(
        spec.key, T0, end, source=SyntheticSource(3, holes=holes, clock=lambda: NOW),
        store=SQLCandleStore(ledger), ledger=ledger, now=NOW,
    )  # fmt: skip
    request = BackfillRequest(spec, T0, end)

    with pytest.raises(BackfillError) as raised:
        backfill_market(config, request, now=NOW, source=FailsOn(3, broken, error))
    message = str(raised.value)
    assert str(spec.key) in message and name in message and broken[0].isoformat() in message
    report = raised.value.report
    assert (report.gaps_attempted, report.filled, report.failed, report.written) == (3, 2, 1, 40)
    assert report.missing_after == 5
    rows = gap_rows(ledger)
    assert {r: g.status for r, g in rows.items()} == {
        holes[0]: GapStatus.FILLED,
        broken: GapStatus.FAILED,
        holes[2]: GapStatus.FILLED,
    }
    failed = rows[broken]
    assert (failed.attempts, failed.last_attempt) == (1, NOW)
    assert failed.last_error is not None and failed.last_error.startswith(name)
    with StoreSet.open(config) as stores:
        assert stores.candles.count(spec.key, T0, end) == 360 - 5

    # Backoff: half an hour later the failed gap is not due, so nothing is attempted and nothing fails.
    retry_source = FailsOn(3, broken, error)
    soon = backfill_market(config, request, now=NOW + timedelta(minutes=30), source=retry_source)
    assert (soon.gaps_attempted, soon.failed, soon.missing_after) == (0, 0, 5)
    assert retry_source.calls == []
    assert gap_rows(ledger)[broken].attempts == 1
    # Past it (the first backoff is an hour) the gap is attempted again, and a source that works fills it.
    later = backfill_market(config, request, now=NOW + timedelta(hours=2), source=SyntheticSource(3, clock=lambda: NOW))
    assert (later.gaps_attempted, later.filled, later.failed, later.missing_after) == (1, 1, 0, 0)
    assert gap_rows(ledger)[broken].status == GapStatus.FILLED


# --- (b) the Redis watermark and the latest candle ------------------------------------------------------------


def test_the_watermark_is_the_close_of_the_last_candle_written_and_a_correction_replaces_the_latest(
    migrated: str, ledger: sa.Engine, redis_url: str, redis_prefix: str
) -> None:
    config = StoreConfig(ledger_url=migrated, redis=lambda: RedisClient(redis_url, prefix=redis_prefix))
    spec = spec_of("1M", seed=5)
    now = datetime(2024, 6, 15, tzinfo=UTC)
    may = datetime(2024, 5, 1, tzinfo=UTC)

    # `marketkeeper ingest -t 1M --end 2030-01-01`: only the candles closed by now exist (January..May).
    report = ingest_series(
        config,
        IngestRequest(spec, datetime(2024, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)),
        now=now,
        source=SyntheticSource(5, clock=lambda: now),
    )
    assert (report.written, report.first_written, report.last_written) == (5, datetime(2024, 1, 1, tzinfo=UTC), may)
    cache = CandleCache(RedisClient(redis_url, prefix=redis_prefix))
    assert cache.watermark(spec.key) == spec.base_timeframe.next_open(may) == datetime(2024, 6, 1, tzinfo=UTC)
    first = cache.latest(spec.key)
    with StoreSet.open(config) as stores:
        stored = stores.candles.read(spec.key, may, datetime(2024, 6, 1, tzinfo=UTC))
    assert first is not None and (first.open_time, first.close) == (may, float(stored["close"].iloc[0]))

    # The exchange corrects May's candle: same open time, other values. It replaces the cached one.
    corrected = ingest_series(
        config,
        IngestRequest(spec, may, datetime(2024, 6, 1, tzinfo=UTC)),
        now=now,
        source=SyntheticSource(6, clock=lambda: now),
    )
    assert corrected.written == 1
    with StoreSet.open(config) as stores:
        restored = stores.candles.read(spec.key, may, datetime(2024, 6, 1, tzinfo=UTC))
    latest = cache.latest(spec.key)
    assert float(restored["close"].iloc[0]) != first.close
    assert latest is not None and latest.open_time == may
    assert (latest.open, latest.high, latest.low, latest.close, latest.volume) == tuple(
        float(restored[c].iloc[0]) for c in ("open", "high", "low", "close", "volume")
    )
    assert cache.watermark(spec.key) == datetime(2024, 6, 1, tzinfo=UTC)


# --- (c) a lost lock stops ingestion before the next window's write ----------------------------------------


class KillsLockOn(CandleSource):
    """The synthetic source; its ``nth`` fetch first kills the PostgreSQL session holding ``lock`` (a crashed
    or restarted server side) and waits until the lock's renewer has noticed."""

    def __init__(self, ledger: sa.Engine, nth: int) -> None:
        self.inner = SyntheticSource(7, clock=lambda: NOW)
        self.ledger, self.nth, self.calls = ledger, nth, 0
        self.lock: SeriesLock | None = None

    @property
    def name(self) -> str:
        return "kills-lock"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        self.calls += 1
        if self.calls == self.nth:
            assert self.lock is not None
            with self.ledger.connect() as conn:
                killed = conn.execute(
                    sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": f"marketkeeper lock {self.lock.holder}"[:63]},
                ).all()
            assert killed == [(True,)]
            deadline = time.monotonic() + 30
            while not self.lock.lost:  # the renewer checks every ttl / 3
                if time.monotonic() > deadline:
                    pytest.fail("the lock's renewer never noticed its session was killed")
                time.sleep(0.05)
        yield from self.inner.fetch_batches(key, start, end)


def test_a_lock_lost_mid_ingestion_stops_it_before_the_next_write(ledger: sa.Engine) -> None:
    key = spec_of(symbol="LOST/USDT").key
    store = SQLCandleStore(ledger)
    source = KillsLockOn(ledger, nth=3)
    lock = series_lock(key, ledger=ledger, ttl=3.0, holder="svctest-lost-lock")
    assert isinstance(lock, PostgresSeriesLock)
    source.lock = lock
    with pytest.raises(SeriesLockLostError, match="LOST/USDT"), lock:
        ingest_range(
            key, T0, T0 + timedelta(hours=5), source=source, store=store, ledger=ledger, now=NOW, window=60, lock=lock
        )
    assert source.calls == 3
    # The first two windows were written; nothing of the third (fetched after the loss) or later.
    assert store.count(key, T0, T0 + timedelta(hours=2)) == 120
    assert store.count(key, T0 + timedelta(hours=2), T0 + timedelta(hours=5)) == 0
    # And the lock really is free: another writer takes it at once.
    with series_lock(key, ledger=ledger, wait=0) as other:
        other.ensure_held()


# --- (d) one lock policy and one market resolution for the CLI and the DAGs ----------------------------------


@pytest.fixture
def cli_env(migrated: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's environment: the test ledger, no InfluxDB, no Redis."""
    monkeypatch.setenv("DATABASE_URL", migrated)
    for name in ("INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_BUCKET", "REDIS_URL", MARKETS_ENV):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_one_change_to_the_lock_policy_reaches_the_cli_and_the_dag_task(
    config: StoreConfig, ledger: sa.Engine, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_of(symbol="POLICY/USDT", seed=8)
    monkeypatch.setattr(policy_module, "LOCK_POLICY", LockPolicy(wait=0.2, ttl=30.0))
    monkeypatch.setattr(airflow_stores, "store_config", lambda: config)
    waits: list[tuple[float, float]] = []
    real_lock = writer_service.series_lock

    def spy(key: SeriesKey, **kw: Any) -> SeriesLock:
        waits.append((kw["wait"], kw["ttl"]))
        return real_lock(key, **kw)

    monkeypatch.setattr(writer_service, "series_lock", spy)
    start, end = T0, T0 + timedelta(hours=1)
    args = ("ingest", "-e", EXCHANGE, "-s", spec.symbol, "--start", start.isoformat(), "--end", end.isoformat())

    with series_lock(spec.key, ledger=ledger, holder="svctest-other-writer"):
        result = cli(*args, "--source", "synthetic:8")
        assert result.exit_code == 1, result.output
        assert f"series {spec.key} is locked by svctest-other-writer" in result.output
        with pytest.raises(SeriesLockedError, match="svctest-other-writer"):
            ingest_market(spec.model_dump(mode="json"), start, end, max_failed_fraction=0.01)
    assert waits == [(0.2, 30.0), (0.2, 30.0)]  # the CLI and the DAG task both waited what the policy says
    with StoreSet.open(config) as stores:
        assert stores.candles.count(spec.key, start, end) == 0

    # Once the other writer is gone, the same two calls go through.
    summary, events = ingest_market(spec.model_dump(mode="json"), start, end, max_failed_fraction=0.01)
    assert summary["written"] == 60 and len(events) == 1
    result = cli(*args, "--source", "synthetic:8")
    assert result.exit_code == 0, result.output
    assert "60 written" in result.output


def test_one_market_declaration_reaches_the_cli_and_the_dag_plan(
    config: StoreConfig, ledger: sa.Engine, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    symbol = "DECL/USDT"
    key = SeriesKey.of(EXCHANGE, symbol, "1h")
    args = ("ingest", "-e", EXCHANGE, "-s", symbol, "-t", "1h", "--start", "2024-05-01", "--end", "2024-05-08")

    def declare(first_date: str, seed: int) -> None:
        entry = {"exchange": EXCHANGE, "symbol": symbol, "base_timeframe": "1h", "source": f"synthetic:{seed}"}
        monkeypatch.setenv(MARKETS_ENV, json.dumps({"markets": [{**entry, "first_date": first_date}]}))

    declare("2024-05-06", seed=21)
    planned = plan_markets(config)  # what the DAGs' plan task runs (no Variable set)
    assert [(s.key, s.first_date, s.source) for s in planned] == [(key, date(2024, 5, 6), "synthetic:21")]
    assert (market_for(key).first_date, market_for(key).source) == (date(2024, 5, 6), "synthetic:21")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    # The CLI honoured the declared first_date (the range starts there, not at --start) and the declared source.
    assert f"{key} [2024-05-06T00:00:00+00:00, 2024-05-08T00:00:00+00:00): 48 fetched, 48 written" in result.output
    with ledger.connect() as conn:
        assert conn.scalar(sa.select(Market.first_date).where(Market.exchange == EXCHANGE)) == date(2024, 5, 6)

    declare("2024-05-07", seed=22)
    planned = plan_markets(config)
    assert [(s.key, s.first_date, s.source) for s in planned] == [(key, date(2024, 5, 7), "synthetic:22")]
    assert (market_for(key).first_date, market_for(key).source) == (date(2024, 5, 7), "synthetic:22")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert f"{key} [2024-05-07T00:00:00+00:00, 2024-05-08T00:00:00+00:00): 24 fetched, 24 written" in result.output
    with ledger.connect() as conn:
        assert conn.scalar(sa.select(Market.first_date).where(Market.exchange == EXCHANGE)) == date(2024, 5, 7)
