"""The candle store contract of ``write_many`` (several series in one call), on every backend: SQL on
PostgreSQL, SQL on SQLite and InfluxDB, with the contract suite's fixtures and helpers.

Each item reads back as :meth:`CandleStore.write` of it would have stored it (hostile names, exact floats,
derived counts, absent optional values kept from the stored ones); a frame a store cannot keep, or a series
named twice, refuses the whole call before anything is written; a failure names the store and the series.
"""

from __future__ import annotations

import pandas as pd
import pytest

from marketkeeper.candles import EXPECTED_COUNT, SOURCE_COUNT
from marketkeeper.stores import CandleStoreError
from marketkeeper.stores.base import CandleStoreUnavailableError
from tests.integration import test_candle_store_contract as contract
from tests.integration.test_candle_store_contract import ALL_TIME, EXACT_FLOATS, T0, Backend, assert_same, candles

pytestmark = pytest.mark.integration

# The contract suite's fixtures: the same three backends, the same migrated ledgers.
backend = contract.backend
migrated_pg_url = contract.migrated_pg_url
sqlite_url = contract.sqlite_url


def tier(frame: pd.DataFrame, expected: int) -> pd.DataFrame:
    """``frame`` as a derived tier's candles: with source/expected counts, some buckets incomplete."""
    out = frame.copy()
    out[SOURCE_COUNT] = pd.array([expected - (i % 3) for i in range(len(out))], dtype="Int64")
    out[EXPECTED_COUNT] = pd.array([expected] * len(out), dtype="Int64")
    return out


def test_every_series_reads_back_as_its_own_write(backend: Backend) -> None:
    exchange = backend.key().exchange
    keys = [
        backend.key('BTC "quoted"/USDT', "5m", exchange=exchange),
        backend.key("A{x}/€ ñ", "1h", exchange=exchange),
        backend.key("BTC/USDT", "1d", exchange=exchange),
        backend.key("ETH/USDT", "1m"),
    ]
    frames = [
        tier(candles(T0, 7, tf="5m", optional="mixed"), 5),
        tier(candles(T0, 3, tf="1h", optional="none"), 60),
        tier(candles(T0, 2, tf="24h", optional="both"), 1440),
        candles(T0, 11, optional="trade_count"),
    ]
    frames[2].loc[:, "close"] = EXACT_FLOATS[:2]

    written = backend.store.write_many(list(zip(keys, frames, strict=True)))

    assert written == [7, 3, 2, 11]
    for key, frame in zip(keys, frames, strict=True):
        assert_same(backend.store.read(key, *ALL_TIME), frame)
    assert sorted(backend.mine(), key=str) == sorted(keys, key=str)


def test_empty_frames_write_nothing_and_count_zero(backend: Backend) -> None:
    full, empty = backend.key("BTC/USDT"), backend.key("ETH/USDT")
    frame = candles(T0, 4)

    assert backend.store.write_many([(full, frame), (empty, frame.iloc[:0])]) == [4, 0]
    assert backend.store.write_many([]) == []

    assert backend.store.count(empty, *ALL_TIME) == 0
    assert_same(backend.store.read(full, *ALL_TIME), frame)


def test_a_rewrite_is_an_upsert_that_keeps_absent_optional_values(backend: Backend) -> None:
    a, b = backend.key("BTC/USDT"), backend.key("ETH/USDT")
    rich_a, rich_b = candles(T0, 6, seed=1), candles(T0, 5, seed=2)
    backend.store.write_many([(a, rich_a), (b, rich_b)])
    poorer_b = rich_b.drop(columns=["quote_volume", "trade_count"])
    poorer_b.loc[2, "close"] = 42.5
    changed_b = rich_b.copy()
    changed_b.loc[2, "close"] = 42.5

    assert backend.store.write_many([(a, rich_a), (b, poorer_b)]) == [6, 5]

    assert_same(backend.store.read(a, *ALL_TIME), rich_a)
    assert_same(backend.store.read(b, *ALL_TIME), changed_b)


def test_a_frame_no_store_can_keep_refuses_the_whole_call(backend: Backend) -> None:
    good, bad = backend.key("BTC/USDT"), backend.key("ETH/USDT")
    damaged = candles(T0, 5)
    damaged.loc[3, "high"] = float("inf")

    with pytest.raises(CandleStoreError, match="infinite") as caught:
        backend.store.write_many([(good, candles(T0, 5)), (bad, damaged)])

    assert caught.value.key == bad
    assert backend.store.count(good, *ALL_TIME) == 0


def test_a_series_named_twice_is_refused(backend: Backend) -> None:
    key = backend.key()
    with pytest.raises(CandleStoreError, match="appears twice") as caught:
        backend.store.write_many([(key, candles(T0, 3)), (key, candles(T0 + pd.Timedelta("1h"), 3))])
    assert caught.value.key == key
    assert backend.store.count(key, *ALL_TIME) == 0


def test_a_failed_write_names_the_store_and_the_series_and_a_retry_completes(backend: Backend) -> None:
    keys = [backend.key("BTC/USDT", "5m"), backend.key("BTC/USDT", "1h")]
    frames = [tier(candles(T0, 4, tf="5m"), 5), tier(candles(T0, 2, tf="1h"), 60)]
    items = list(zip(keys, frames, strict=True))
    broken = backend.make_broken()
    try:
        with pytest.raises(CandleStoreError) as caught:
            broken.write_many(items)
    finally:
        broken.close()

    error = caught.value
    assert type(error) is CandleStoreUnavailableError
    assert (error.store, error.operation) == (broken.name, "write")
    # Together (PostgreSQL, InfluxDB) the error lists every series; one by one (SQLite), the one that failed.
    assert str(keys[0]) in str(error)
    if backend.name != "sqlite":
        assert str(keys[1]) in str(error)
    assert T0.isoformat() in str(error)

    assert backend.store.write_many(items) == [4, 2]
    for key, frame in items:
        assert_same(backend.store.read(key, *ALL_TIME), frame)


def test_many_rows_in_all_are_written_series_by_series(backend: Backend) -> None:
    # More rows than one joint statement or request takes: every series still arrives whole.
    n = 30_000 if backend.name != "sqlite" else 3_000
    keys = [backend.key("BTC/USDT"), backend.key("ETH/USDT")]
    frames = [candles(T0, n, seed=3, optional="mixed"), candles(T0, n, seed=4)]

    assert backend.store.write_many(list(zip(keys, frames, strict=True))) == [n, n]

    for key, frame in zip(keys, frames, strict=True):
        assert_same(backend.store.read(key, *ALL_TIME), frame)
