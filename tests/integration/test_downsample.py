"""Derived tiers on the real stores: equal to an independent pandas resample in both stores, recomputed exactly
where candle events say base data was written (late data makes buckets complete, nothing else is rewritten),
and pending downsamples kept until their buckets are computed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.markets import MarketSpec
from marketkeeper.repositories import unit_of_work
from marketkeeper.services.downsample import (
    DownsampleRequest,
    downsample_market,
    downsample_markets,
    pending_requests,
    requests_from_events,
)
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.sources.synthetic import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from marketkeeper.timeframes import Timeframe
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL
from tests.integration.test_cli import run_cli
from tests.unit.test_tiers_resample import base_frame, reference

pytestmark = pytest.mark.integration

ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
TIERS = ("5m", "15m", "1h", "4h", "1d", "1w", "1M")


@dataclass
class Backend:
    name: str
    config: StoreConfig

    def market(self, **fields: object) -> MarketSpec:
        return MarketSpec(exchange=f"t{uuid.uuid4().hex[:12]}", symbol="BTC/USDT", source="synthetic:3", **fields)


@pytest.fixture(params=["postgresql", "influxdb"])
def backend(request: pytest.FixtureRequest, pg_ledger: str) -> Iterator[Backend]:
    if request.param == "postgresql":
        yield Backend("postgresql", StoreConfig(ledger_url=pg_ledger))
        return
    influxdb = request.getfixturevalue("influxdb_client")
    yield Backend(
        "influxdb",
        StoreConfig(
            ledger_url=pg_ledger, influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
        ),
    )
    assert influxdb is not None


def stored(config: StoreConfig, key: SeriesKey) -> pd.DataFrame:
    with StoreSet.open(config) as stores:
        return stores.candles.read(key, *ALL_TIME)


def test_every_tier_equals_a_pandas_resample_of_the_stored_base(backend: Backend) -> None:
    market = backend.market()
    base = base_frame("1m", "2024-01-24 09:13", 5 * 7 * 1440, seed=21)  # 5 weeks, holes, across two month ends
    with StoreSet.open(backend.config) as stores:
        stores.candles.write(market.key, base)
    start, end = datetime(2024, 1, 24, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)

    report = downsample_market(backend.config, DownsampleRequest(market, start, end))

    base_back = stored(backend.config, market.key)
    for tier in TIERS:
        expected = reference(base_back, "1m", tier)
        got = stored(backend.config, market.tier_key(tier))
        pd.testing.assert_frame_equal(got, expected, check_freq=False, obj=f"{backend.name} {tier}")
        written = next(t for t in report.tiers if str(t.timeframe) == tier)
        assert written.buckets == len(expected)
        assert written.incomplete == int((expected["source_count"] < expected["expected_count"]).sum()) > 0
    # Re-running the range leaves the stores exactly as one run did.
    downsample_market(backend.config, DownsampleRequest(market, start, end))
    for tier in TIERS:
        pd.testing.assert_frame_equal(stored(backend.config, market.tier_key(tier)), reference(base_back, "1m", tier))


def events_of(report: object) -> list[dict[str, object]]:
    """The Asset event extras ingestion and backfill emit for a report (see airflow.ingestion.ingest_result)."""
    from marketkeeper.airflow.ingestion import ingest_result

    return [event["extra"] for event in ingest_result(report)["events"]]  # type: ignore[arg-type]


def test_late_data_completes_its_buckets_and_recomputes_nothing_else(backend: Backend) -> None:
    market = backend.market()
    start, end = datetime(2024, 2, 26, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC)  # Mon..Sat, across a month
    hole = (datetime(2024, 2, 28, 10, 7, tzinfo=UTC), datetime(2024, 2, 28, 11, 33, tzinfo=UTC))
    holed = SyntheticSource(3, holes=[hole])
    first = ingest_series(backend.config, IngestRequest(market, start, end), source=holed)
    assert first.written == market.key.timeframe.count(start, end) - 86

    batch = downsample_markets(backend.config, requests_from_events(events_of(first), [market]))
    batch.raise_for_failures()
    hour = stored(backend.config, market.tier_key("1h")).set_index("open_time")
    assert hour.loc[pd.Timestamp("2024-02-28 10:00", tz="UTC"), "source_count"] == 7
    assert hour.loc[pd.Timestamp("2024-02-28 11:00", tz="UTC"), "source_count"] == 27
    assert (
        pd.Timestamp("2024-02-28 10:15", tz="UTC")
        not in stored(backend.config, market.tier_key("15m"))["open_time"].tolist()
    )  # an empty bucket is absent, never a zero-volume candle

    # The backfill of the hole, and the run its Asset event triggers.
    late = ingest_series(backend.config, IngestRequest(market, *hole), source=SyntheticSource(3))
    assert late.written == 86
    (request,) = requests_from_events(events_of(late), [market])
    assert (request.start, request.end) == hole
    report = downsample_market(backend.config, request)

    touched = {str(t.timeframe): t.buckets for t in report.tiers}
    assert touched == {
        "5m": 18,  # 10:05 .. 11:30
        "15m": 7,  # 10:00 .. 11:30
        "1h": 2,
        "4h": 1,
        "1d": 1,
        "1w": 1,
        "1M": 1,
    }
    base_back = stored(backend.config, market.key)
    assert len(base_back) == market.key.timeframe.count(start, end)
    for tier in TIERS:
        pd.testing.assert_frame_equal(
            stored(backend.config, market.tier_key(tier)), reference(base_back, "1m", tier), obj=tier
        )
    day = stored(backend.config, market.tier_key("1d")).set_index("open_time")
    assert day.loc[pd.Timestamp("2024-02-28", tz="UTC"), "source_count"] == 1440  # complete now
    with unit_of_work(StoreSet.open(backend.config).ledger) as repos:
        assert repos.tiers.pending(market.key) == []  # every bucket closed long ago: nothing left pending


def test_unclosed_buckets_stay_pending_and_the_reconciliation_pass_finishes_them(pg_ledger: str) -> None:
    config = StoreConfig(ledger_url=pg_ledger)
    market = MarketSpec(
        exchange=f"t{uuid.uuid4().hex[:12]}", symbol="ETH/USDT", source="synthetic:4", derived=("1h", "1d")
    )
    start, end = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 6, 3, tzinfo=UTC)
    ingest_series(config, IngestRequest(market, start, end), source=SyntheticSource(4))
    # At 03:00 the hours have closed, the day has not: 1h written, 1d stays pending for the three hours.
    report = downsample_market(config, DownsampleRequest(market, start, end), now=end)
    assert {str(t.timeframe): t.buckets for t in report.tiers} == {"1h": 3, "1d": 0}
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        rows = [(r.tier, r.start, r.end) for r in repos.tiers.pending(market.key)]
    assert rows == [("1d", start, end)]

    # The daily pass, a day later: exactly that 1d bucket, from the three stored hours.
    (request,) = pending_requests(config, [market])
    assert (request.tiers, request.start, request.end) == ((Timeframe.parse("1d"),), start, end)
    later = downsample_market(config, request, now=end + timedelta(days=1))
    assert {str(t.timeframe): t.buckets for t in later.tiers} == {"1d": 1}
    day = stored(config, market.tier_key("1d"))
    assert day["source_count"].tolist() == [180] and day["expected_count"].tolist() == [1440]
    assert pending_requests(config, [market]) == []


def test_a_write_outside_any_event_is_pending_until_downsampled(pg_ledger: str) -> None:
    config = StoreConfig(ledger_url=pg_ledger)
    market = MarketSpec(exchange=f"t{uuid.uuid4().hex[:12]}", symbol="SOL/USDT", source="synthetic:5")
    start, end = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 6, 1, tzinfo=UTC)
    ingest_series(config, IngestRequest(market, start, end), source=SyntheticSource(5))
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        assert [(r.tier, r.start, r.end) for r in repos.tiers.pending(market.key)] == [(None, start, end)]
    (request,) = pending_requests(config, [market])
    assert request.tiers is None
    downsample_market(config, request)
    assert pending_requests(config, [market]) == []
    assert stored(config, market.tier_key("1h"))["source_count"].tolist() == [60]


def test_requests_from_events_join_ranges_per_market_and_ignore_other_series() -> None:
    market = MarketSpec(exchange="binance", symbol="BTC/USDT")
    undeclared = {"market": "kraken:BTC/USD", "timeframe": "1m", "start": "2024-01-01T00:00:00+00:00"}
    events = [
        {"market": "binance:BTC/USDT", "timeframe": "1m", "start": "2024-01-01T01:00:00+00:00",
         "end": "2024-01-01T02:00:00+00:00", "rows": 60, "origin": "ingest"},
        {"market": "binance:BTC/USDT", "timeframe": "1m", "start": "2024-01-01T00:00:00+00:00",
         "end": "2024-01-01T01:00:00+00:00", "rows": 60, "origin": "ingest"},
        {"market": "binance:BTC/USDT", "timeframe": "1m", "start": "2024-01-03T00:00:00+00:00",
         "end": "2024-01-03T00:10:00+00:00", "rows": 10, "origin": "backfill"},
        {**undeclared, "end": "2024-01-01T01:00:00+00:00"},
        {"market": "binance:BTC/USDT", "timeframe": "1h", "start": "2024-01-01T00:00:00+00:00",
         "end": "2024-01-01T01:00:00+00:00"},  # not the base series: nothing to derive from it
    ]  # fmt: skip
    requests = requests_from_events(events, [market])
    assert [(r.start.isoformat(), r.end.isoformat()) for r in requests] == [
        ("2024-01-01T00:00:00+00:00", "2024-01-01T02:00:00+00:00"),
        ("2024-01-03T00:00:00+00:00", "2024-01-03T00:10:00+00:00"),
    ]


def test_cli_downsample_prints_each_tier_and_refuses_an_undeclared_tier(pg_ledger: str, tmp_path: Path) -> None:
    exchange = f"t{uuid.uuid4().hex[:12]}"
    markets = json.dumps({"markets": [{"exchange": exchange, "symbol": "BTC/USDT", "source": "synthetic:6"}]})
    env = {"DATABASE_URL": pg_ledger, "MARKETKEEPER_HOME": str(tmp_path), "MARKETKEEPER_MARKETS": markets}
    series = ["-e", exchange, "-s", "BTC/USDT", "--start", "2024-05-06T00:00", "--end", "2024-05-06T02:00"]
    ingested = run_cli("ingest", *series, "-t", "1m", env=env, cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr

    result = run_cli("downsample", *series, "--to", "1h,5m", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  5m: 24 bucket(s), 0 incomplete" in result.stdout
    assert "  1h: 2 bucket(s), 0 incomplete" in result.stdout
    as_json = run_cli("candles", *series, "-t", "1h", "--format", "json", env=env, cwd=tmp_path)
    rows = json.loads(as_json.stdout)
    assert [(r["source_count"], r["expected_count"]) for r in rows] == [(60, 60), (60, 60)]

    bad = run_cli("downsample", *series, "--to", "3m", env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"error: {exchange}:BTC/USDT:1m does not derive 3m; its tiers are 5m, 15m, 1h, 4h, 1d, 1w, 1M"
    ]
