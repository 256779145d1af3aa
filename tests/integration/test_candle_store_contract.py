"""The candle store contract, run against every backend on the real servers: SQL on PostgreSQL, SQL on
SQLite and InfluxDB. Each test writes series of its own (a unique exchange name) and deletes them after.

Hostile names (quotes, separators, braces, percent signs, unicode) and tricky floats must come back exactly
as written from every backend; a name line protocol cannot carry is refused by the InfluxDB store, naming it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from pandas.testing import assert_frame_equal

from marketkeeper.candles import CANDLE_COLUMNS, DTYPES, SeriesKey, normalize_frame
from marketkeeper.errors import MarketkeeperError
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.stores import CandleStore, CandleStoreError, InfluxDBCandleStore, SQLCandleStore
from marketkeeper.stores.base import CandleStoreMissingError, CandleStoreUnavailableError
from marketkeeper.timeframes import NaiveDatetimeError

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
# Floats whose shortest repr has many digits: a lossy path (15-digit casts, str() of Decimals) shows here.
TRICKY = [0.1 + 0.2, 1 / 3, 29999.99, 1e-8, 12345678.12345678, 0.000123456789, 2.0**40 + 0.5, 7.0]
HOSTILE_SYMBOLS = [
    'BTC "quoted"/USDT',
    "it's/USDT",
    "a,b=c d/USDT",
    "back\\slash/USDT",
    "💰🚀/USDT",
    "中文 ñ ü/€",
    "tab\there/USDT",
    "$sym; DROP TABLE x--",
    "trailing space ",
    # str.format templates would read these as placeholders or escapes ("A{{B" came back as "A{B").
    "A{{B",
    "A{x}/USDT",
    "{0}{}{!r}/USDT",
    "}{ }}/USDT",
    "%d %s %%/USDT",
    "back\\n{not a newline}",
]
HOSTILE_EXCHANGES = ["ex{{change}}", "ex,ch ange=", "{}", "%s"]
#: Names line protocol cannot carry (see marketkeeper.influxdb.lineprotocol): InfluxDB refuses them.
UNCARRIABLE_SYMBOLS = ["line\nbreak/USDT", "trailing backslash\\", 'backslash\\"quote']
#: Floats a decimal column or a short repr would change: every store must return these exact doubles.
EXACT_FLOATS = [
    1.2345678901234567e-10,
    1e-19,
    5e-324,  # the smallest subnormal
    123456789.12345679,
    0.1 + 0.2,
    1 / 3,
    2.0**53 + 2,
    1.7976931348623157e308,
    -2.5e-300,
    7e22,
]


def candles(start: datetime, n: int, *, tf: str = "1m", seed: int = 0, optional: str = "both") -> pd.DataFrame:
    """``n`` plausible candles from ``start``; ``optional`` is none, quote_volume, trade_count, both or mixed."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(tf.replace("m", "min")) if tf.endswith("m") else pd.Timedelta(tf)
    close = np.round(30_000 + np.cumsum(rng.normal(0, 25, n)), 2)
    close[: min(n, len(TRICKY))] = TRICKY[: min(n, len(TRICKY))]
    open_ = np.round(close + rng.normal(0, 5, n), 2)
    frame = pd.DataFrame(
        {
            "open_time": pd.date_range(start, periods=n, freq=step, tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + 1.25,
            "low": np.minimum(open_, close) - 0.75,
            "close": close,
            "volume": np.round(rng.random(n) * 100, 8),
        }
    )
    if optional in ("quote_volume", "both", "mixed"):
        frame["quote_volume"] = np.round(frame["volume"] * frame["close"], 6)
    if optional in ("trade_count", "both", "mixed"):
        frame["trade_count"] = pd.array(rng.integers(0, 10_000, n), dtype="Int64")
    if optional == "mixed":
        frame.loc[frame.index % 3 == 1, "quote_volume"] = np.nan
        frame.loc[frame.index % 4 == 2, "trade_count"] = pd.NA
    return frame


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """What a read of ``frame`` must return: every candle column, absent optional values NaN/NA."""
    out = normalize_frame(frame)
    for name in CANDLE_COLUMNS:
        if name not in out.columns:
            out[name] = pd.Series([None] * len(out), dtype=DTYPES[name])  # type: ignore[call-overload]
    return out[list(CANDLE_COLUMNS)].reset_index(drop=True)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert_frame_equal(actual.reset_index(drop=True), canonical(expected), check_exact=True)


# --- backends ------------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    store: CandleStore
    #: A store of the same kind whose server is down (for SQLite: whose file cannot be opened).
    make_broken: Callable[[], CandleStore]
    exchanges: list[str] = field(default_factory=list)

    def key(self, symbol: str = "BTC/USDT", timeframe: str = "1m", *, exchange: str | None = None) -> SeriesKey:
        """A series of this test's own: the exchange name is unique per test unless one is given."""
        if exchange is None:
            exchange = f"t{uuid.uuid4().hex[:12]}"
        if exchange not in self.exchanges:
            self.exchanges.append(exchange)
        return SeriesKey.of(exchange, symbol, timeframe)

    def mine(self) -> list[SeriesKey]:
        return [k for k in self.store.list_series() if k.exchange in self.exchanges]


@pytest.fixture(scope="session")
def migrated_pg_url(pg_url: str) -> str:
    migrate.upgrade(pg_url)
    return pg_url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('candles') / 'ledger.sqlite'}"
    migrate.upgrade(url)
    return url


def _down_pg_store(url: str) -> CandleStore:
    down = sa.engine.make_url(url).set(port=1)
    engine = create_ledger_engine(down.render_as_string(hide_password=False), connect_args={"connect_timeout": 2})
    return SQLCandleStore(engine, owns_engine=True)


def _unopenable_sqlite_store(folder: Path) -> CandleStore:
    # The "file" is a directory: SQLite cannot open it, the closest it comes to a server that is down.
    (folder / "not-a-file.sqlite").mkdir(exist_ok=True)
    return SQLCandleStore(create_ledger_engine(f"sqlite:///{folder / 'not-a-file.sqlite'}"), owns_engine=True)


def _down_influxdb_store() -> CandleStore:
    client = InfluxDBClient("http://127.0.0.1:1", database="marketkeeper_test", max_retries=0, timeout=2)
    return InfluxDBCandleStore(client, owns_client=True)


@pytest.fixture(params=["postgresql", "sqlite", "influxdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_pg_url")
        store: CandleStore = SQLCandleStore(create_ledger_engine(url), owns_engine=True)
        b = Backend("postgresql", store, lambda: _down_pg_store(url))
    elif request.param == "sqlite":
        store = SQLCandleStore(create_ledger_engine(request.getfixturevalue("sqlite_url")), owns_engine=True)
        b = Backend("sqlite", store, lambda: _unopenable_sqlite_store(tmp_path))
    else:
        store = InfluxDBCandleStore(request.getfixturevalue("influxdb_client"))
        b = Backend("influxdb", store, _down_influxdb_store)
    yield b
    for key in b.mine():
        b.store.delete_range(key, *ALL_TIME)
    assert b.mine() == []
    b.store.close()


# --- values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optional", ["none", "quote_volume", "trade_count", "both", "mixed"])
def test_values_read_back_equal_values_written(backend: Backend, optional: str) -> None:
    key = backend.key()
    frame = candles(T0, 50, optional=optional)

    assert backend.store.write(key, frame) == 50

    assert_same(backend.store.read(key, T0, T0 + timedelta(days=1)), frame)


def test_write_accepts_unsorted_frames_and_other_timezones(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 20)
    shuffled = frame.sample(frac=1, random_state=1)
    shuffled["open_time"] = shuffled["open_time"].dt.tz_convert("America/New_York")

    backend.store.write(key, shuffled)

    assert_same(backend.store.read(key, *ALL_TIME), frame)


def test_writing_the_same_candles_twice_changes_nothing(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 30)
    backend.store.write(key, frame)

    assert backend.store.write(key, frame) == 30

    assert backend.store.count(key, *ALL_TIME) == 30
    assert_same(backend.store.read(key, *ALL_TIME), frame)


def test_a_changed_candle_replaces_the_old_one(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 10)
    backend.store.write(key, frame)
    changed = frame.iloc[[2, 5]].copy()
    changed["close"] += 0.5
    changed["high"] += 1.0
    changed["quote_volume"] = [1.5, 2.5]
    changed["trade_count"] = pd.array([7, 8], dtype="Int64")

    backend.store.write(key, changed)

    expected = frame.copy()
    expected.loc[[2, 5], ["close", "high", "quote_volume", "trade_count"]] = changed[
        ["close", "high", "quote_volume", "trade_count"]
    ]
    assert backend.store.count(key, *ALL_TIME) == 10
    assert_same(backend.store.read(key, *ALL_TIME), expected)


def test_a_rewrite_without_optional_values_keeps_the_stored_ones(backend: Backend) -> None:
    key = backend.key()
    rich = candles(T0, 6, optional="both")
    backend.store.write(key, rich)
    poor = rich.drop(columns=["quote_volume", "trade_count"])
    poor["close"] += 1.0

    backend.store.write(key, poor)

    expected = rich.copy()
    expected["close"] += 1.0
    assert_same(backend.store.read(key, *ALL_TIME), expected)


def test_series_never_bleed_into_each_other(backend: Backend) -> None:
    a = backend.key("ETH/USDT", "1m")
    b = backend.key("ETH/USDT", "1m")  # same symbol, another exchange
    c = backend.key("ETH/USDT", "5m", exchange=a.exchange)  # same market, another timeframe
    d = backend.key("ETH/BTC", "1m", exchange=a.exchange)  # same exchange, another symbol
    frames = {
        a: candles(T0, 10, seed=1),
        b: candles(T0, 7, seed=2),
        c: candles(T0, 4, tf="5m", seed=3),
        d: candles(T0, 5, seed=4, optional="none"),
    }
    for key, frame in frames.items():
        backend.store.write(key, frame)

    for key, frame in frames.items():
        assert_same(backend.store.read(key, *ALL_TIME), frame)
        assert backend.store.count(key, *ALL_TIME) == len(frame)
    backend.store.delete_range(a, *ALL_TIME)
    assert backend.store.count(a, *ALL_TIME) == 0
    for key in (b, c, d):
        assert_same(backend.store.read(key, *ALL_TIME), frames[key])


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbol_names_round_trip(backend: Backend, symbol: str) -> None:
    key = backend.key(symbol)
    neighbour = backend.key("BTC/USDT", exchange=key.exchange)
    frame = candles(T0, 5)
    backend.store.write(key, frame)
    backend.store.write(neighbour, candles(T0, 3, seed=9))

    assert_same(backend.store.read(key, *ALL_TIME), frame)
    assert key in backend.store.list_series()
    assert backend.store.first_open_time(key) == T0
    assert backend.store.last_open_time(key) == T0 + timedelta(minutes=4)
    assert backend.store.delete_range(key, T0, T0 + timedelta(minutes=2)) == 2
    assert backend.store.count(key, *ALL_TIME) == 3
    assert backend.store.count(neighbour, *ALL_TIME) == 3


@pytest.mark.parametrize("exchange", HOSTILE_EXCHANGES)
def test_hostile_exchange_names_round_trip(backend: Backend, exchange: str) -> None:
    unique = f"{exchange}{uuid.uuid4().hex[:8]}"
    key = backend.key("A{x}/USDT", exchange=unique)
    frame = candles(T0, 4)

    assert backend.store.write(key, frame) == 4

    assert_same(backend.store.read(key, *ALL_TIME), frame)
    assert [k for k in backend.store.list_series() if k.exchange == unique] == [key]
    assert backend.store.delete_range(key, *ALL_TIME) == 4


@pytest.mark.parametrize("symbol", UNCARRIABLE_SYMBOLS, ids=repr)
def test_names_line_protocol_cannot_carry_are_refused_by_influxdb_and_kept_by_sql(
    backend: Backend, symbol: str
) -> None:
    key = backend.key(symbol)
    frame = candles(T0, 3)
    if backend.name != "influxdb":
        backend.store.write(key, frame)
        assert_same(backend.store.read(key, *ALL_TIME), frame)
        return
    with pytest.raises(CandleStoreError) as caught:
        backend.store.write(key, frame)
    assert repr(symbol) in str(caught.value)
    assert type(caught.value) is CandleStoreError  # refused input, not a store that is down
    assert backend.store.count(key, *ALL_TIME) == 0


def test_tricky_floats_read_back_as_the_very_same_doubles(backend: Backend) -> None:
    key = backend.key()
    n = len(EXACT_FLOATS)
    rolled = {name: np.roll(EXACT_FLOATS, i) for i, name in enumerate(("open", "high", "low", "close", "volume"))}
    frame = pd.DataFrame(
        {
            "open_time": pd.date_range(T0, periods=n, freq="1min", tz="UTC"),
            **rolled,
            "quote_volume": np.roll(EXACT_FLOATS, 5),
            "trade_count": pd.array(range(n), dtype="Int64"),
        }
    )

    backend.store.write(key, frame)

    back = backend.store.read(key, *ALL_TIME)
    for name in ("open", "high", "low", "close", "volume", "quote_volume"):
        # repr() compares the doubles bit for bit (and tells 1e-19 from 0 in a failure message).
        assert [repr(v) for v in back[name].tolist()] == [repr(v) for v in frame[name].tolist()], name
    assert_same(backend.store.latest(key, n), frame)
    # Rewriting the same doubles is recognized as unchanged, and a changed last bit as a change.
    nudged = frame.iloc[[0]].assign(close=np.nextafter(frame["close"].iloc[0], 0.0))
    backend.store.write(key, nudged)
    assert backend.store.read(key, T0, T0 + timedelta(minutes=1))["close"].tolist() == nudged["close"].tolist()


# --- ranges and queries --------------------------------------------------------------------------------


def test_ranges_are_half_open(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 10)
    backend.store.write(key, frame)
    minute = timedelta(minutes=1)
    start, end = T0 + 2 * minute, T0 + 5 * minute

    assert_same(backend.store.read(key, start, end), frame.iloc[2:5])
    assert backend.store.count(key, start, end) == 3
    expected_ns = frame["open_time"].iloc[2:5].dt.as_unit("ns").array.asi8
    assert backend.store.open_times(key, start, end).tolist() == list(expected_ns)
    assert backend.store.open_times(key, start, end).dtype == np.int64
    # Between candles: the first one at or after start counts, none at end.
    assert backend.store.count(key, start - minute / 2, end + minute / 2) == 4
    assert backend.store.count(key, start, start) == 0
    assert backend.store.read(key, start, start).empty
    assert backend.store.open_times(key, start, start).tolist() == []


def test_start_after_end_is_an_error(backend: Backend) -> None:
    key = backend.key()
    with pytest.raises(MarketkeeperError, match="after end"):
        backend.store.read(key, T0 + timedelta(days=1), T0)


def test_latest_returns_the_newest_candles_ascending(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 10)
    backend.store.write(key, frame)

    assert_same(backend.store.latest(key, 3), frame.iloc[7:])
    assert_same(backend.store.latest(key), frame.iloc[9:])
    assert_same(backend.store.latest(key, 100), frame)
    assert list(backend.store.latest(backend.key(), 5).columns) == list(CANDLE_COLUMNS)
    assert backend.store.latest(backend.key(), 5).empty
    with pytest.raises(ValueError, match="positive"):
        backend.store.latest(key, 0)


def test_first_and_last_open_time(backend: Backend) -> None:
    key = backend.key()
    backend.store.write(key, candles(T0, 10))

    assert backend.store.first_open_time(key) == T0
    assert backend.store.last_open_time(key) == T0 + timedelta(minutes=9)
    assert backend.store.first_open_time(key).tzinfo is not None  # type: ignore[union-attr]
    empty = backend.key()
    assert backend.store.first_open_time(empty) is None
    assert backend.store.last_open_time(empty) is None


def test_list_series_lists_every_series_with_candles(backend: Backend) -> None:
    a = backend.key("BTC/USDT", "1m")
    b = backend.key("BTC/USDT", "1h", exchange=a.exchange)
    c = backend.key("ETH/USDT", "1m")
    for key in (a, b, c):
        backend.store.write(key, candles(T0, 3, tf="1h" if key is b else "1m"))

    assert sorted(backend.mine(), key=str) == sorted([a, b, c], key=str)


def test_delete_range(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 10)
    backend.store.write(key, frame)

    assert backend.store.delete_range(key, T0 + timedelta(minutes=3), T0 + timedelta(minutes=6)) == 3
    assert backend.store.delete_range(key, T0 + timedelta(minutes=3), T0 + timedelta(minutes=6)) == 0
    assert_same(backend.store.read(key, *ALL_TIME), pd.concat([frame.iloc[:3], frame.iloc[6:]]))
    assert backend.store.delete_range(key, *ALL_TIME) == 7
    assert key not in backend.store.list_series()
    assert backend.store.first_open_time(key) is None


# --- bad input and failures ----------------------------------------------------------------------------


def test_an_empty_frame_write_is_a_no_op(backend: Backend) -> None:
    key = backend.key()

    assert backend.store.write(key, candles(T0, 0)) == 0

    assert backend.store.count(key, *ALL_TIME) == 0
    assert key not in backend.store.list_series()


def test_naive_datetimes_are_refused(backend: Backend) -> None:
    key = backend.key()
    naive = datetime(2024, 3, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(NaiveDatetimeError, match="no timezone"):
        backend.store.read(key, naive, T0)
    with pytest.raises(NaiveDatetimeError):
        backend.store.count(key, T0, naive)
    with pytest.raises(NaiveDatetimeError):
        backend.store.delete_range(key, naive, naive)
    frame = candles(T0, 3)
    frame["open_time"] = frame["open_time"].dt.tz_localize(None)
    with pytest.raises(CandleStoreError, match="naive"):
        backend.store.write(key, frame)
    assert backend.store.count(key, *ALL_TIME) == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.assign(close=f["close"].where(f.index != 1, np.nan)), "close has NaN"),
        (lambda f: f.assign(high=f["high"].where(f.index != 1, np.inf)), "high has NaN or infinite"),
        (lambda f: pd.concat([f, f.iloc[[1]]]), "share open_time"),
        (lambda f: f.drop(columns=["volume"]), "missing column"),
    ],
)
def test_frames_a_store_cannot_keep_are_refused_whole(
    backend: Backend, damage: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    key = backend.key()
    with pytest.raises(CandleStoreError, match=message) as caught:
        backend.store.write(key, damage(candles(T0, 5)))
    assert str(key) in str(caught.value)
    assert backend.store.count(key, *ALL_TIME) == 0


def test_a_failed_write_raises_and_a_retry_completes_without_duplicates(backend: Backend) -> None:
    key = backend.key()
    frame = candles(T0, 40)
    # The first half got through before the store went away.
    backend.store.write(key, frame.iloc[:20])
    broken = backend.make_broken()
    try:
        with pytest.raises(CandleStoreError) as caught:
            broken.write(key, frame)
    finally:
        broken.close()

    error = caught.value
    assert type(error) is CandleStoreUnavailableError
    assert error.store == broken.name
    assert error.operation == "write"
    assert error.key == key
    message = str(error)
    assert broken.name in message
    assert str(key) in message
    assert T0.isoformat() in message  # the range

    assert backend.store.write(key, frame) == 40
    assert backend.store.count(key, *ALL_TIME) == 40
    assert_same(backend.store.read(key, *ALL_TIME), frame)


def test_reads_from_a_down_store_raise_naming_the_store(backend: Backend) -> None:
    key = backend.key()
    broken = backend.make_broken()
    try:
        with pytest.raises(CandleStoreUnavailableError, match="read") as caught:
            broken.read(key, T0, T0 + timedelta(days=1))
    finally:
        broken.close()
    assert caught.value.store == broken.name
    assert broken.name in str(caught.value)


def test_many_candles_round_trip_across_write_chunks_and_read_pages(backend: Backend) -> None:
    key = backend.key()
    n = 60_000 if backend.name != "sqlite" else 12_000
    frame = candles(T0, n, optional="mixed")

    assert backend.store.write(key, frame) == n

    assert backend.store.count(key, *ALL_TIME) == n
    assert_same(backend.store.read(key, *ALL_TIME), frame)
    assert len(backend.store.open_times(key, *ALL_TIME)) == n


# --- backend-specific promises -------------------------------------------------------------------------


def test_postgresql_identical_rewrite_touches_no_row(migrated_pg_url: str) -> None:
    store = SQLCandleStore(create_ledger_engine(migrated_pg_url), owns_engine=True)
    key = SeriesKey.of(f"t{uuid.uuid4().hex[:12]}", "BTC/USDT", "1m")
    frame = candles(T0, 20)
    xmin = sa.text("SELECT xmin::text FROM candles WHERE exchange = :exchange ORDER BY open_time")
    try:
        store.write(key, frame)
        with store.engine.connect() as conn:
            before = conn.execute(xmin, {"exchange": key.exchange}).scalars().all()

        store.write(key, frame)

        with store.engine.connect() as conn:
            after = conn.execute(xmin, {"exchange": key.exchange}).scalars().all()
        assert after == before
        changed = frame.iloc[[3]].assign(close=frame["close"].iloc[3] + 1)
        store.write(key, changed)
        with store.engine.connect() as conn:
            last = conn.execute(xmin, {"exchange": key.exchange}).scalars().all()
        assert [i for i, (x, y) in enumerate(zip(before, last, strict=True)) if x != y] == [3]
    finally:
        store.delete_range(key, *ALL_TIME)
        store.close()


def test_sql_store_refuses_names_longer_than_the_table_holds(migrated_pg_url: str) -> None:
    store = SQLCandleStore(create_ledger_engine(migrated_pg_url), owns_engine=True)
    key = SeriesKey.of("binance", "X" * 33, "1m")
    try:
        with pytest.raises(CandleStoreError, match="longer than the 32 characters"):
            store.write(key, candles(T0, 2))
    finally:
        store.close()


@pytest.fixture(params=["postgresql", "sqlite", "influxdb"])
def store_without_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CandleStore]:
    """A store whose database (InfluxDB) or table (SQL: a ledger never migrated) does not exist."""
    if request.param == "postgresql":
        store: CandleStore = SQLCandleStore(create_ledger_engine(request.getfixturevalue("fresh_pg_url")))
    elif request.param == "sqlite":
        store = SQLCandleStore(create_ledger_engine(f"sqlite:///{tmp_path / 'unmigrated.sqlite'}"))
    else:
        client: InfluxDBClient = request.getfixturevalue("influxdb_client")
        missing = f"{client.database}_missing_{uuid.uuid4().hex[:6]}"
        store = InfluxDBCandleStore(InfluxDBClient(client.url, database=missing, max_retries=0), owns_client=True)
    yield store
    store.close()


def test_a_missing_database_is_an_error_naming_the_remedy_never_created_by_a_write(
    store_without_database: CandleStore,
) -> None:
    store = store_without_database
    key = SeriesKey.of("binance", "BTC/USDT", "1m")
    with pytest.raises(CandleStoreMissingError, match="marketkeeper db upgrade") as write:
        store.write(key, candles(T0, 3))
    with pytest.raises(CandleStoreMissingError, match="marketkeeper db upgrade") as read:
        store.read(key, *ALL_TIME)
    for caught in (write, read):
        assert caught.value.store == store.name
        assert "\n" not in str(caught.value)
    # Still missing: the write did not create it.
    with pytest.raises(CandleStoreMissingError):
        store.count(key, *ALL_TIME)


def test_influxdb_ensure_database_is_the_explicit_idempotent_create_step(influxdb_client: InfluxDBClient) -> None:
    missing = f"{influxdb_client.database}_new_{uuid.uuid4().hex[:6]}"
    store = InfluxDBCandleStore(InfluxDBClient(influxdb_client.url, database=missing), owns_client=True)
    key = SeriesKey.of("binance", "BTC/USDT", "1m")
    try:
        with pytest.raises(CandleStoreMissingError, match=repr(missing)):
            store.write(key, candles(T0, 2))

        assert store.ensure_database() is True
        store.write(key, candles(T0, 2))
        assert store.ensure_database() is False  # a second run keeps the data

        assert store.count(key, *ALL_TIME) == 2
    finally:
        store.client.drop_database()
        store.close()
