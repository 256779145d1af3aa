"""The ops status against real ledgers and candle stores: freshness lag, gaps, quality share, breaches, the
alert life cycle (one alert per breach, never repeated, resolved when the breach ends) and ``marketkeeper
status`` as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.markets import MarketSpec
from marketkeeper.ops.figures import Breach
from marketkeeper.ops.slo import Slos
from marketkeeper.repositories import unit_of_work
from marketkeeper.services.gaps import detect_gaps
from marketkeeper.services.status import ops_status, sync_alerts
from marketkeeper.sources.synthetic import SyntheticSource
from marketkeeper.store_set import StoreConfig, StoreSet
from tests.conftest import own_pg_ledger
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

BTC = SeriesKey.of("opstest", "BTC/USDT", "1m")
ETH = SeriesKey.of("opstest", "ETH/USDT", "1m")
DECLARATION = json.dumps(
    {
        "markets": [
            {"exchange": k.exchange, "symbol": k.symbol, "base_timeframe": "1m", "source": "synthetic:5", "derived": []}
            for k in (BTC, ETH)
        ]
        + [{"exchange": "opstest", "symbol": "OLD/USDT", "source": "synthetic:5", "active": False, "derived": []}]
    }
)


def write(config: StoreConfig, key: SeriesKey, start: datetime, end: datetime) -> None:
    source = SyntheticSource(5, clock=lambda: end + timedelta(days=1))
    frame = pd.concat([b.frame for b in source.fetch_batches(key, start, end)], ignore_index=True)
    with StoreSet.open(config) as stores:
        stores.candles.write(key, frame)


def spec(key: SeriesKey) -> MarketSpec:
    return MarketSpec(exchange=key.exchange, symbol=key.symbol, base_timeframe="1m", source="synthetic:5")


def ours(breaches: list[Breach]) -> set[tuple[str, str]]:
    """The breaches of this module's series (the PostgreSQL ledger is shared with other tests' stores)."""
    return {(b.slo, b.subject) for b in breaches if b.subject.startswith("opstest:")}


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(second=30, microsecond=0)


@pytest.fixture(scope="module")
def module_pg_ledger() -> Iterator[str]:
    """This module's own PostgreSQL ledger: the session's holds other tests' backup rows, and the backups
    section must show only this module's."""
    with own_pg_ledger("ops_status") as url:
        yield url


@pytest.fixture
def config(ledger_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> StoreConfig:
    monkeypatch.setenv("MARKETKEEPER_MARKETS", DECLARATION)
    if ledger_url.startswith("postgresql"):
        ledger_url = request.getfixturevalue("module_pg_ledger")
    return StoreConfig(ledger_url=ledger_url)


def test_figures_breaches_and_one_alert_per_breach(config: StoreConfig, now: datetime) -> None:
    top = now.replace(second=0)
    # BTC: fresh up to the last closed candle, with a 10-candle hole; ETH: stopped 10 candles ago.
    write(config, BTC, top - timedelta(hours=2), top - timedelta(minutes=70))
    write(config, BTC, top - timedelta(minutes=60), top)
    write(config, ETH, top - timedelta(hours=2), top - timedelta(minutes=10))
    detect_gaps(config, spec(BTC), start=top - timedelta(hours=2), now=now)
    engine = create_ledger_engine(config.ledger_url)
    with unit_of_work(engine) as repos:
        repos.quality.add_run(
            suite="ohlcv", exchange=ETH.exchange, symbol=ETH.symbol, timeframe="1m",
            range_start=top - timedelta(hours=1), range_end=top, rows_checked=100, rows_failed=5, success=True,
            dag_id="ohlcv_ingest", run_at=now,
        )  # fmt: skip
    engine.dispose()

    status = ops_status(config, now=now, slos=Slos())
    by_series = {s.label: s for s in status.series}
    assert set(by_series) == {str(BTC), str(ETH)}  # the inactive market is not watched
    btc, eth = by_series[str(BTC)], by_series[str(ETH)]
    assert (btc.last_candle, btc.lag_candles, btc.open_gaps, btc.missing_candles) == (
        top - timedelta(minutes=1),
        0,
        1,
        10,
    )
    assert btc.status == "gaps"
    assert (eth.last_candle, eth.lag_candles, eth.status) == (top - timedelta(minutes=11), 10, "stale")
    assert eth.quality_failure_share == pytest.approx(0.05) and eth.last_run_by == "ohlcv_ingest"
    assert eth.stale_since == top - timedelta(minutes=11) + timedelta(minutes=4)
    assert ours(status.breaches) == {("freshness", str(ETH)), ("quality", str(ETH))}
    assert status.stores[0].store == "ledger" and status.stores[0].ok
    assert status.backups is None and status.as_dict()["backups_note"] == "no backups configured"

    first = sync_alerts(config, status)
    assert sorted(b.key for b in first.opened if "opstest" in b.key) == [f"freshness:{ETH}", f"quality:{ETH}"]
    again = sync_alerts(config, ops_status(config, now=now + timedelta(seconds=30), slos=Slos()))
    assert again.opened == [] and again.still_open == sorted(b.key for b in first.opened)

    # Two days on, the BTC gap is older than a day: a new breach; ETH caught up: its freshness alert resolves.
    later = now + timedelta(days=2)
    write(config, ETH, top - timedelta(minutes=10), later.replace(second=0))
    write(config, BTC, top, later.replace(second=0))
    moved = ops_status(config, now=later, slos=Slos())
    assert ours(moved.breaches) == {("gap_age", str(BTC))}
    third = sync_alerts(config, moved)
    assert [b.key for b in third.opened if "opstest" in b.key] == [f"gap_age:{BTC}"]
    assert [k for k in third.resolved if "opstest" in k] == [f"freshness:{ETH}", f"quality:{ETH}"]
    engine = create_ledger_engine(config.ledger_url)
    with unit_of_work(engine) as repos:
        alerts = {a.key: a for a in repos.alerts.list(limit=100) if a.key and "opstest" in a.key}
        assert len(alerts) == 3 and all(a.user_id is None for a in alerts.values())
        assert alerts[f"freshness:{ETH}"].resolved_at is not None
        assert alerts[f"freshness:{ETH}"].since == eth.stale_since
        assert alerts[f"gap_age:{BTC}"].resolved_at is None and alerts[f"gap_age:{BTC}"].severity == "medium"
        repos.alerts.resolve(list(alerts), at=later)
    engine.dispose()


def test_status_command_exits_1_naming_each_breach(fresh_pg_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": fresh_pg_url, "MARKETKEEPER_MARKETS": DECLARATION}
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    top = datetime.now(UTC).replace(second=0, microsecond=0)
    config = StoreConfig(ledger_url=fresh_pg_url)
    write(config, BTC, top - timedelta(hours=1), top + timedelta(minutes=5))

    result = run_cli("status", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    btc = next(s for s in document["series"] if s["symbol"] == "BTC/USDT")
    assert {"exchange", "symbol", "timeframe", "last_candle", "lag_candles", "open_gaps", "missing_candles"} <= set(btc)
    assert btc["lag_candles"] == 0 and btc["open_gaps"] == 0
    assert [(b["slo"], b["subject"]) for b in document["breaches"]] == [("freshness", str(ETH))]
    assert document["backups"] is None and [s["store"] for s in document["stores"]] == ["ledger", "influxdb", "redis"]
    assert result.stderr.strip() == f"error: 1 SLO breach(es): freshness {ETH}"

    table = run_cli("status", env=env, cwd=tmp_path)
    assert table.returncode == 1
    assert "no candle stored" in table.stdout and "no backups configured" in table.stdout

    write(config, ETH, top - timedelta(hours=1), top + timedelta(minutes=5))
    fine = run_cli("status", env=env, cwd=tmp_path)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "breaches: 0" in fine.stdout


def test_a_store_that_is_down_is_a_breach_not_a_crash(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "MARKETKEEPER_MARKETS": DECLARATION}
    result = run_cli("status", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["breaches"][-1]["slo"] == "store_up" and "ledger is down" in document["breaches"][-1]["message"]
    assert all(s["status"] == "error" for s in document["series"])
    assert "Traceback" not in result.stderr


def test_slo_settings_from_the_environment() -> None:
    slos = Slos.from_env({"MARKETKEEPER_SLO_MAX_LAG_CANDLES": "1m=5,1h=1", "MARKETKEEPER_SLO_MAX_GAP_AGE_HOURS": "6"})
    assert (slos.lag_limit("1m"), slos.lag_limit("1h"), slos.lag_limit("4h")) == (5, 1, 2)
    assert slos.max_gap_age == timedelta(hours=6)
    assert Slos.from_env({"MARKETKEEPER_SLO_MAX_LAG_CANDLES": "7"}).lag_limit("1m") == 7
    from marketkeeper.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="MARKETKEEPER_SLO_MAX_BACKUP_AGE_DAYS"):
        Slos.from_env({"MARKETKEEPER_SLO_MAX_BACKUP_AGE_DAYS": "soon"})


def test_backups_from_the_catalog_their_age_slo_and_metrics(
    config: StoreConfig, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketkeeper.ops.metrics import render_metrics
    from marketkeeper.repositories.backups import BackupRepository

    # A series and a backup store of this test's own: the PostgreSQL ledger is shared by the session.
    key = SeriesKey.of("opsbackup", "BTC/USDT", "1m")
    monkeypatch.setenv(
        "MARKETKEEPER_MARKETS",
        json.dumps({"markets": [{"exchange": "opsbackup", "symbol": "BTC/USDT", "derived": []}]}),
    )
    top = now.replace(second=0)
    write(config, key, top - timedelta(minutes=30), top)
    engine = create_ledger_engine(config.ledger_url)
    with unit_of_work(engine) as repos:
        backups = BackupRepository(repos.session)
        run = backups.start(store="ops-ledger", kind="pg_dump-custom", location="file:///backups/ledger-1.dump")
        backups.succeed(run, size_bytes=10, sha256="0" * 64, location="file:///backups/ledger-1.dump")
        backups.drilled(run, passed=True, error=None, rto_seconds=1.0, rpo_seconds=1.0, details={})
    engine.dispose()

    status = ops_status(config, now=now + timedelta(minutes=1), slos=Slos())
    assert status.backups is not None
    ledger = next(b for b in status.backups if b.store == "ops-ledger")
    assert ledger.last_verified_at is not None and ledger.location == "file:///backups/ledger-1.dump"
    assert ledger.last_drill_status == "verified"
    assert not [b for b in status.breaches if b.slo == "backup_age" and b.subject == "ops-ledger"]
    text = render_metrics(status).decode()
    assert 'marketkeeper_backup_age_seconds{kind="verified",store="ops-ledger"}' in text
    assert (
        'marketkeeper_series_freshness_lag_candles{exchange="opsbackup",symbol="BTC/USDT",timeframe="1m"} 1.0' in text
    )
    assert 'marketkeeper_store_up{store="ledger"} 1.0' in text

    nine_days = ops_status(config, now=now + timedelta(days=9), slos=Slos())
    aged = [b for b in nine_days.breaches if b.slo == "backup_age"]
    assert ("ops-ledger", "high") in [(b.subject, b.severity) for b in aged]
    assert any("ops-ledger: newest verified backup" in b.message and "older than 8 days" in b.message for b in aged)


def test_figures_from_the_influxdb_candle_store_and_a_dead_influxdb(
    pg_ledger: str, influxdb_client: Any, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    from marketkeeper.influxdb import InfluxDBClient
    from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

    key = SeriesKey.of("opsinflux", "BTC/USDT", "1m")
    monkeypatch.setenv(
        "MARKETKEEPER_MARKETS",
        json.dumps({"markets": [{"exchange": "opsinflux", "symbol": "BTC/USDT", "derived": []}]}),
    )
    config = StoreConfig(
        ledger_url=pg_ledger, influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB)
    )
    top = now.replace(second=0)
    write(config, key, top - timedelta(minutes=30), top - timedelta(minutes=4))
    status = ops_status(config, now=now, slos=Slos())
    (figures,) = status.series
    assert (figures.last_candle, figures.lag_candles, figures.status) == (top - timedelta(minutes=5), 4, "stale")
    assert [s.store for s in status.stores if s.ok and s.configured] == ["ledger", "influxdb"]

    dead = StoreConfig(
        ledger_url=pg_ledger, influxdb=lambda: InfluxDBClient("http://127.0.0.1:1", database="x", max_retries=0)
    )
    down = ops_status(dead, now=now, slos=Slos())
    assert down.series[0].status == "error" and "influxdb down" in (down.series[0].error or "")
    assert ("store_up", "influxdb") in {(b.slo, b.subject) for b in down.breaches}


def test_a_failed_notification_is_sent_again_not_lost(config: StoreConfig, now: datetime) -> None:
    from marketkeeper.services.status import deliver_alerts

    monkey_key = SeriesKey.of("opsnotify", "BTC/USDT", "1m")
    breach = Breach("freshness", str(monkey_key), "high", "opsnotify: no candle stored", None)
    status = ops_status(config, now=now, slos=Slos())
    sync_alerts(config, replace(status, breaches=[breach]))
    batches: list[list[str]] = []

    def smtp_down(alerts: list[dict[str, Any]]) -> None:
        raise ConnectionRefusedError("smtp down")

    with pytest.raises(ConnectionRefusedError):
        deliver_alerts(config, smtp_down)
    assert deliver_alerts(config, lambda alerts: batches.append([str(a["key"]) for a in alerts])) >= 1
    assert f"freshness:{monkey_key}" in batches[0]
    assert deliver_alerts(config, lambda alerts: batches.append([str(a["key"]) for a in alerts])) == 0
    assert len(batches) == 1  # delivered once, then never again while open
    sync_alerts(config, replace(status, breaches=[]))


def test_a_derived_tier_is_a_series_of_its_own(
    config: StoreConfig, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, tier = SeriesKey.of("opstier", "BTC/USDT", "1m"), SeriesKey.of("opstier", "BTC/USDT", "5m")
    monkeypatch.setenv(
        "MARKETKEEPER_MARKETS",
        json.dumps({"markets": [{"exchange": "opstier", "symbol": "BTC/USDT", "derived": ["5m"]}]}),
    )
    top = now.replace(second=0)
    write(config, base, top - timedelta(hours=1), top)
    five = top.replace(minute=top.minute - top.minute % 5)
    write(config, tier, five - timedelta(minutes=60), five - timedelta(minutes=15))  # downsampling behind
    status = ops_status(config, now=now, slos=Slos())
    by_series = {s.label: s for s in status.series}
    assert list(by_series) == [str(base), str(tier)]
    assert by_series[str(base)].lag_candles == 0
    # Newest closed 5m bucket opened at five - 5 min; the tier's newest stored one at five - 20 min.
    assert by_series[str(tier)].lag_candles == 3 and by_series[str(tier)].status == "stale"
    assert ("freshness", str(tier)) in {(b.slo, b.subject) for b in status.breaches}


def _fail_task(url: str, subject: str, run_id: str, at: datetime) -> None:
    """A ``task_failed`` alert as the task-failure callback writes it."""
    engine = create_ledger_engine(url)
    with unit_of_work(engine) as repos:
        repos.alerts.open_task_failure(
            key=f"task:{subject}:{run_id}",
            subject=subject,
            title=f"task failed: {subject}",
            message=f"{subject} failed in run {run_id}: boom",
            details={"run_id": run_id},
            at=at,
        )
    engine.dispose()


def test_an_open_failed_task_is_listed_and_fails_status_until_acknowledged(fresh_pg_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": fresh_pg_url, "MARKETKEEPER_MARKETS": DECLARATION}
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    top = datetime.now(UTC).replace(second=0, microsecond=0)
    config = StoreConfig(ledger_url=fresh_pg_url)
    for key in (BTC, ETH):  # every series fresh: only the failed task is wrong
        write(config, key, top - timedelta(hours=1), top + timedelta(minutes=5))
    _fail_task(fresh_pg_url, "ohlcv_ingest.plan", "manual__1", top)

    result = run_cli("status", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["breaches"] == [] and document["ok"] is False
    (alert,) = document["alerts"]
    assert (alert["kind"], alert["subject"], alert["severity"]) == ("task_failed", "ohlcv_ingest.plan", "high")
    short = alert["id"].replace("-", "")[:8]
    assert result.stderr.strip() == f"error: 1 failed task(s) open: ohlcv_ingest.plan ({short})"
    table = run_cli("status", env=env, cwd=tmp_path)
    assert table.returncode == 1
    assert f"{short}  [high] task_failed since " in table.stdout and "failed in run manual__1: boom" in table.stdout

    wrong = run_cli("status", "--ack", "xyz", env=env, cwd=tmp_path)
    assert wrong.returncode == 1 and "give at least its first 6 hex digits" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    acked = run_cli("status", "--ack", short, env=env, cwd=tmp_path)
    assert acked.returncode == 0, acked.stderr
    assert (
        acked.stdout.strip() == f"acknowledged {short} (task_failed ohlcv_ingest.plan): task failed: ohlcv_ingest.plan"
    )

    fine = run_cli("status", env=env, cwd=tmp_path)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "open alerts: 0" in fine.stdout
    engine = create_ledger_engine(fresh_pg_url)
    with unit_of_work(engine) as repos:
        (row,) = repos.alerts.list(limit=10)
        assert row.resolved_at is not None and row.extra_metadata["resolution"] == "acknowledged"
    engine.dispose()
    again = run_cli("status", "--ack", short, env=env, cwd=tmp_path)  # only an open alert can be acknowledged
    assert again.returncode == 1 and "does not exist" in again.stderr


def test_a_task_that_succeeds_resolves_its_open_failures_and_no_other(config: StoreConfig, now: datetime) -> None:
    from marketkeeper.ops.metrics import render_metrics
    from marketkeeper.ops.page import render_page
    from marketkeeper.services.status import resolve_task_failures

    subject, other = "opsresolve.load[2]", "opsresolve.load[3]"
    _fail_task(config.ledger_url, subject, "scheduled__1", now)
    _fail_task(config.ledger_url, subject, "scheduled__2", now)
    _fail_task(config.ledger_url, other, "scheduled__2", now)
    status = ops_status(config, now=now, slos=Slos())
    assert {subject, other} <= {a.subject for a in status.failed_tasks} and not status.ok
    page = render_page(status, {})
    assert page.count('<tr class="task_failed"') == len(status.failed_tasks) and "status --ack ID" in page
    assert (
        f'marketkeeper_open_alerts{{kind="task_failed"}} {len(status.failed_tasks)}.0'
        in render_metrics(status).decode()
    )

    resolved = resolve_task_failures(config, subject, run_id="scheduled__3")

    assert sorted(resolved) == [f"task:{subject}:scheduled__1", f"task:{subject}:scheduled__2"]
    still = [a for a in ops_status(config, now=now, slos=Slos()).alerts if a.subject in (subject, other)]
    assert [a.subject for a in still] == [other]
    assert resolve_task_failures(config, subject, run_id="scheduled__4") == []
    resolve_task_failures(config, other, run_id="scheduled__3")
