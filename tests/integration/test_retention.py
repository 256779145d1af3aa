"""Retention on the real stores: the dry run is what is then deleted, base candles not safely downsampled are held
back with the reason, and gap detection and backfill never bring a deleted range back (no retention/backfill
loop)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketkeeper.markets import MarketSpec
from marketkeeper.repositories import unit_of_work
from marketkeeper.services.downsample import DownsampleRequest, downsample_market
from marketkeeper.services.gaps import BackfillRequest, backfill_market, detect_gaps
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.services.markets import sync_declared
from marketkeeper.services.retention import apply_retention
from marketkeeper.sources.synthetic import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from tests.integration.test_cli import run_cli
from tests.integration.test_downsample import ALL_TIME, Backend, backend  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

START, END = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 6, tzinfo=UTC)
NOW = datetime(2024, 5, 6, 0, 0, tzinfo=UTC)
CUT = datetime(2024, 5, 4, tzinfo=UTC)  # 2 days before NOW


def declared(exchange: str) -> MarketSpec:
    return MarketSpec(
        exchange=exchange,
        symbol="BTC/USDT",
        source="synthetic:3",
        first_date=START.date(),
        derived=("1h", "1d"),
        retention_days={"1m": 2},
    )


def count(config: StoreConfig, key: object, start: datetime, end: datetime) -> int:
    with StoreSet.open(config) as stores:
        return stores.candles.count(key, start, end)  # type: ignore[arg-type]


def test_dry_run_is_what_is_deleted_and_the_deleted_range_is_never_a_gap_again(backend: Backend) -> None:  # noqa: F811
    market = declared(backend.market().exchange)
    config = backend.config
    sync_declared(config, [market])  # the ledger's markets row holds first_date, as every scheduled run syncs it
    ingest_series(config, IngestRequest(market, START, END), source=SyntheticSource(3))
    downsample_market(config, DownsampleRequest(market, START, END))

    plan = apply_retention(config, [market], dry_run=True, now=NOW)
    (item,) = plan.items
    assert (item.start, item.end, item.rows, item.held_back) == (START, CUT, 3 * 1440, [])
    assert count(config, market.key, START, CUT) == 3 * 1440  # a dry run deletes nothing

    done = apply_retention(config, [market], now=NOW)
    assert done.items[0].deleted == plan.items[0].rows == 3 * 1440
    assert count(config, market.key, *ALL_TIME) == 2 * 1440
    assert count(config, market.tier_key("1h"), *ALL_TIME) == 5 * 24  # the tiers keep the history
    assert count(config, market.tier_key("1d"), *ALL_TIME) == 5

    # first_date is 2024-05-01, yet the deleted days are no gap: detection starts at the horizon ...
    detection = detect_gaps(config, market, now=NOW)
    assert detection.window[0] == CUT and detection.origin == "retention horizon"
    assert detection.gaps == []
    # ... and a backfill of the whole declared history brings nothing back.
    backfill = backfill_market(config, BackfillRequest(market), now=NOW, source=SyntheticSource(3))
    assert backfill.written == 0
    assert count(config, market.key, START, CUT) == 0
    # Running retention again finds nothing more to do.
    again = apply_retention(config, [market], now=NOW)
    assert again.items[0].start is None and again.deleted == 0


def test_a_base_range_written_after_its_tiers_were_computed_is_held_back(pg_ledger: str) -> None:
    config = StoreConfig(ledger_url=pg_ledger)
    market = declared(f"t{uuid.uuid4().hex[:12]}")
    ingest_series(config, IngestRequest(market, START, END), source=SyntheticSource(3))
    downsample_market(config, DownsampleRequest(market, START, END))
    # A correction of 2024-05-02 12:00..13:00 lands after the tiers were computed (no downsample yet).
    late = (datetime(2024, 5, 2, 12, tzinfo=UTC), datetime(2024, 5, 2, 13, tzinfo=UTC))
    ingest_series(config, IngestRequest(market, *late), source=SyntheticSource(8))

    (item,) = apply_retention(config, [market], dry_run=True, now=NOW).items
    assert (item.start, item.end, item.rows) == (START, datetime(2024, 5, 2, tzinfo=UTC), 1440)
    (reason,) = item.held_back
    assert reason.startswith("[2024-05-02T00:00:00+00:00, 2024-05-04T00:00:00+00:00): written since every tier")
    assert "pending downsample" in reason

    done = apply_retention(config, [market], now=NOW)
    assert done.deleted == 1440 and count(config, market.key, datetime(2024, 5, 2, tzinfo=UTC), CUT) == 2 * 1440
    # Once the tiers are recomputed, the rest goes too.
    downsample_market(config, DownsampleRequest(market, *late))
    assert apply_retention(config, [market], now=NOW).deleted == 2 * 1440


def test_a_tier_that_does_not_hold_the_base_holds_the_delete_back(pg_ledger: str) -> None:
    config = StoreConfig(ledger_url=pg_ledger)
    market = declared(f"t{uuid.uuid4().hex[:12]}")
    ingest_series(config, IngestRequest(market, START, END), source=SyntheticSource(3))
    # Tiers computed for the first day only; the pending rows of the rest are settled by hand, as if lost.
    downsample_market(config, DownsampleRequest(market, START, datetime(2024, 5, 2, tzinfo=UTC)))
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        for row in repos.tiers.pending(market.key):
            repos.session.delete(row)

    (item,) = apply_retention(config, [market], dry_run=True, now=NOW).items
    assert (item.start, item.end) == (START, datetime(2024, 5, 2, tzinfo=UTC))
    assert any("tier 1h does not hold these candles" in r for r in item.held_back)


def test_cli_retention_dry_run_prints_the_plan(pg_ledger: str, tmp_path: Path) -> None:
    exchange = f"t{uuid.uuid4().hex[:12]}"
    entry = {
        "exchange": exchange,
        "symbol": "BTC/USDT",
        "source": "synthetic:3",
        "derived": ["1h"],
        "retention_days": {"1m": 1},
    }
    env = {
        "DATABASE_URL": pg_ledger,
        "MARKETKEEPER_HOME": str(tmp_path),
        "MARKETKEEPER_MARKETS": json.dumps({"markets": [entry]}),
    }
    series = ["-e", exchange, "-s", "BTC/USDT", "--start", "2024-05-06T00:00", "--end", "2024-05-06T02:00"]
    assert run_cli("ingest", *series, env=env, cwd=tmp_path).returncode == 0
    result = run_cli("retention", "--dry-run", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Never downsampled: the whole range is pending, so everything is held back and the reason printed.
    assert lines[0].startswith(f"{exchange}:BTC/USDT:1m (keep 1 days, cut ") and lines[0].endswith("nothing to delete")
    assert lines[1].startswith("  held back [2024-05-06T00:00:00+00:00, ") and "pending downsample" in lines[1]
    assert lines[-1].startswith("would delete 0 candle(s) in 1 series")
    assert run_cli("downsample", *series, env=env, cwd=tmp_path).returncode == 0
    result = run_cli("retention", "--dry-run", env=env, cwd=tmp_path)
    first = result.stdout.splitlines()[0]
    assert "would delete [2024-05-06T00:00:00+00:00, " in first and first.endswith("): 120 candle(s)")
    assert "held back" not in result.stdout
