"""``backfill --via airflow`` semantics (:mod:`marketkeeper.services.remote`) against a real Airflow.

The module starts one Airflow (api-server, scheduler, dag-processor; :mod:`tests.airflow_server`) whose tasks
write a throwaway PostgreSQL ledger with the SQL candle store; the markets are declared through the Airflow
Variable ``marketkeeper_markets``, with synthetic sources.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from marketkeeper.airflow_api import AirflowClient, WaitProgress
from marketkeeper.airflow_api.errors import AirflowAuthError
from marketkeeper.candles import SeriesKey
from marketkeeper.ingest import ingest_range
from marketkeeper.ledger import CandleGap, GapStatus, Market, create_ledger_engine, migrate, session_scope
from marketkeeper.services.remote import (
    RemoteBackfillFailedError,
    RemoteBackfillReport,
    RemoteBackfillRequest,
    RemoteMode,
    RemoteRefusedError,
    backfill_via_airflow,
    follow_remote_backfill,
)
from marketkeeper.sources import SyntheticSource
from marketkeeper.stores.sql import SQLCandleStore
from tests.airflow_server import AirflowServer, running_airflow
from tests.conftest import PG_TEST_DB, _drop_pg_database, _recreate_pg_database

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
GAPS_KEY = SeriesKey.of("remotegaps", "BTC/USDT", "1m")
FORCE_KEY = SeriesKey.of("remoteforce", "ETH/USDT", "1m")
SOURCE = "synthetic:5"
MARKETS_YAML = f"""\
markets:
  - exchange: {GAPS_KEY.exchange}
    symbol: {GAPS_KEY.symbol}
    base_timeframe: 1m
    source: {SOURCE}
    first_date: {DAY.date().isoformat()}
  - exchange: {FORCE_KEY.exchange}
    symbol: {FORCE_KEY.symbol}
    base_timeframe: 1m
    source: {SOURCE}
    first_date: {DAY.date().isoformat()}
"""
#: Generous for 2 cores: a task takes a few seconds to start.
WAIT = 300.0


@pytest.fixture(scope="module")
def ledger_url() -> Iterator[str]:
    name = f"{PG_TEST_DB}_remote"
    url = _recreate_pg_database(name)
    migrate.upgrade(url)
    yield url
    _drop_pg_database(name)


@pytest.fixture(scope="module")
def airflow(ledger_url: str) -> Iterator[AirflowServer]:
    with running_airflow({"DATABASE_URL": ledger_url}) as server:
        server.set_variable("marketkeeper_markets", MARKETS_YAML)
        yield server


@pytest.fixture
def client(airflow: AirflowServer) -> Iterator[AirflowClient]:
    with AirflowClient(airflow.url, username=airflow.username, password=airflow.password) as c:
        yield c


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[sa.Engine]:
    engine = create_ledger_engine(ledger_url)
    yield engine
    engine.dispose()


def _created(airflow: AirflowServer) -> tuple[int, int, int]:
    """How many ohlcv_gaps runs, ohlcv_ingest runs and backfills exist."""
    gaps = airflow.api("GET", "/api/v2/dags/ohlcv_gaps/dagRuns", params={"limit": 1})["total_entries"]
    ingest = airflow.api("GET", "/api/v2/dags/ohlcv_ingest/dagRuns", params={"limit": 1})["total_entries"]
    backfills = airflow.api("GET", "/api/v2/backfills", params={"dag_id": "ohlcv_ingest"})["total_entries"]
    return gaps, ingest, backfills


def _gap_statuses(ledger: sa.Engine, key: SeriesKey) -> dict[tuple[datetime, datetime], GapStatus]:
    with session_scope(ledger) as session:
        gaps = session.scalars(sa.select(CandleGap).join(Market).where(Market.exchange == key.exchange)).all()
        return {(g.start, g.end): g.status for g in gaps}


def test_only_the_gaps_runs_ohlcv_gaps_for_the_series_and_window(
    airflow: AirflowServer, client: AirflowClient, ledger: sa.Engine
) -> None:
    start, end = DAY, DAY + timedelta(hours=3)
    hole = (DAY + timedelta(hours=1), DAY + timedelta(hours=1, minutes=30))
    store = SQLCandleStore(ledger)
    ingest_range(GAPS_KEY, start, end, source=SyntheticSource(5, holes=[hole]), store=store, ledger=ledger)
    assert store.count(GAPS_KEY, start, end) == 150
    seen: list[WaitProgress] = []

    request = RemoteBackfillRequest(GAPS_KEY, start, end, retry_source_empty=True, max_failed_fraction=0.05)
    report = backfill_via_airflow(client, request, wait=True, progress=seen.append, timeout=WAIT, poll=1.0)

    assert report.ok and report.mode is RemoteMode.GAPS and report.dag_id == "ohlcv_gaps", airflow.log_tail()
    assert report.conf == {
        "markets": [str(GAPS_KEY)],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "retry_source_empty": True,
        "max_failed_fraction": 0.05,
    }
    run = airflow.api("GET", f"/api/v2/dags/ohlcv_gaps/dagRuns/{report.run_id}")
    assert run["state"] == "success" and run["conf"] == report.conf
    assert store.count(GAPS_KEY, start, end) == 180
    assert store.count(GAPS_KEY, end, end + timedelta(hours=1)) == 0  # the window travelled: nothing beyond it
    assert _gap_statuses(ledger, GAPS_KEY)[hole] == GapStatus.FILLED
    assert seen and seen[-1].state == "success" and "success" in str(seen[-1])
    assert "ended success" in report.summary() and str(GAPS_KEY) in report.summary()


def test_force_backfills_ohlcv_ingest_over_the_range(
    airflow: AirflowServer, client: AirflowClient, ledger: sa.Engine
) -> None:
    start, end = DAY + timedelta(hours=4, minutes=30), DAY + timedelta(hours=5)
    store = SQLCandleStore(ledger)
    assert store.count(FORCE_KEY, start, end) == 0

    request = RemoteBackfillRequest(FORCE_KEY, start, end, force=True, max_failed_fraction=0.02, source=SOURCE)
    report = backfill_via_airflow(client, request, wait=True, timeout=WAIT, poll=1.0)

    assert report.ok and report.mode is RemoteMode.FORCE and report.backfill_id is not None, airflow.log_tail()
    backfill = airflow.api("GET", f"/api/v2/backfills/{report.backfill_id}")
    assert backfill["dag_id"] == "ohlcv_ingest" and backfill["reprocess_behavior"] == "completed"
    assert backfill["dag_run_conf"] == {"markets": [str(FORCE_KEY)], "max_failed_fraction": 0.02}
    assert backfill["completed_at"] is not None
    # From the hour holding start to end inclusive: 04:00 and 05:00.
    logical = sorted(datetime.fromisoformat(r.logical_date or "") for r in report.runs)
    assert logical == [DAY + timedelta(hours=h) for h in (4, 5)]
    assert all(r.state == "success" for r in report.runs)
    assert store.count(FORCE_KEY, start, end) == 30
    assert "2/2 run(s) succeeded" in report.summary()


def test_an_option_that_cannot_travel_is_refused_and_creates_nothing(
    airflow: AirflowServer, client: AirflowClient
) -> None:
    before = _created(airflow)
    other_source = RemoteBackfillRequest(GAPS_KEY, DAY, DAY + timedelta(hours=1), source="ccxt")
    with pytest.raises(RemoteRefusedError) as refused:
        backfill_via_airflow(client, other_source, wait=True)
    message = str(refused.value)
    assert "\n" not in message
    assert "'ccxt' cannot travel" in message and f"declared source {SOURCE!r}" in message

    undeclared = RemoteBackfillRequest(SeriesKey.of("nowhere", "BTC/USDT", "1m"), DAY, DAY + timedelta(hours=1))
    for force in (False, True):
        with pytest.raises(RemoteRefusedError, match="nowhere:BTC/USDT:1m is not declared"):
            backfill_via_airflow(client, replace(undeclared, force=force), wait=False)
    assert _created(airflow) == before


def test_a_wrong_password_is_a_one_line_error_without_the_password(airflow: AirflowServer) -> None:
    before = _created(airflow)
    sentinel = "wrong-" + os.urandom(6).hex()
    bad = AirflowClient(airflow.url, username=airflow.username, password=sentinel)
    with bad, pytest.raises(AirflowAuthError) as refused:
        backfill_via_airflow(bad, RemoteBackfillRequest(GAPS_KEY, DAY, DAY + timedelta(hours=1)), wait=True)
    message = str(refused.value)
    assert "\n" not in message and sentinel not in message and airflow.password not in message
    assert "HTTP 401" in message and "/auth/token" in message
    assert sentinel not in repr(refused.value) and sentinel not in repr(bad)
    assert _created(airflow) == before


def test_a_failed_run_is_named_with_its_failed_tasks(airflow: AirflowServer, client: AirflowClient) -> None:
    # A selection no declaration holds fails ohlcv_ingest's plan without retries: a quick real failure.
    # (backfill_via_airflow refuses such a series up front, so the backfill is created by hand.)
    bogus = "nowhere:BTC/USDT:1m"
    start = DAY + timedelta(hours=8)
    backfill = client.create_backfill(
        "ohlcv_ingest", start, start + timedelta(minutes=30), conf={"markets": [bogus]}, reprocess_behavior="completed"
    )
    submitted = RemoteBackfillReport(
        mode=RemoteMode.FORCE,
        key=SeriesKey.of("nowhere", "BTC/USDT", "1m"),
        start=start,
        end=start + timedelta(hours=1),
        dag_id="ohlcv_ingest",
        conf={"markets": [bogus]},
        airflow_url=client.display_url,
        backfill_id=backfill.id,
        state="running",
    )
    with pytest.raises(RemoteBackfillFailedError) as failed:
        follow_remote_backfill(client, submitted, timeout=WAIT, poll=1.0)
    report = failed.value.report
    assert report.waited and report.state == "failed" and not report.ok
    assert [r.state for r in report.runs] == ["failed"]
    assert any(task.endswith(": plan (failed)") for task in report.failed_tasks), report.failed_tasks
    message = str(failed.value)
    assert "\n" not in message and "ended failed" in message and report.runs[0].run_id in message
    assert "plan (failed)" in message


def test_the_cli_follows_the_remote_gap_backfill_and_exits_with_its_state(
    airflow: AirflowServer, ledger: sa.Engine, ledger_url: str
) -> None:
    """``marketkeeper backfill --via airflow --wait`` as a user runs it: the holes are filled remotely, the command
    prints the run's end and exits 0; a refused option is one line, exit 1, nothing created; the password
    never shows."""
    import subprocess
    import sys

    start, end = DAY + timedelta(hours=6), DAY + timedelta(hours=7)
    hole = (DAY + timedelta(hours=6, minutes=10), DAY + timedelta(hours=6, minutes=20))
    store = SQLCandleStore(ledger)
    ingest_range(GAPS_KEY, start, end, source=SyntheticSource(5, holes=[hole]), store=store, ledger=ledger)
    assert store.count(GAPS_KEY, start, end) == 50
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DATABASE_URL", "INFLUXDB", "REDIS"))},
        "DATABASE_URL": ledger_url,
        "AIRFLOW_API_URL": airflow.url,
        "AIRFLOW_API_USER": airflow.username,
        "AIRFLOW_API_PASSWORD": airflow.password,
    }
    series = ["-e", GAPS_KEY.exchange, "-s", GAPS_KEY.symbol, "-t", "1m", "--start", start.isoformat()]
    command = [sys.executable, "-m", "marketkeeper", "backfill", *series, "--end", end.isoformat(), "--via", "airflow"]

    done = subprocess.run([*command, "--wait", str(WAIT)], env=env, capture_output=True, text=True, timeout=WAIT + 60)
    assert done.returncode == 0, done.stderr + airflow.log_tail()
    assert "ohlcv_gaps run" in done.stdout and "ended success" in done.stdout
    assert store.count(GAPS_KEY, start, end) == 60
    assert airflow.password not in done.stdout + done.stderr

    before = _created(airflow)
    refused = subprocess.run([*command, "--source", "synthetic:9"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: ") and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert _created(airflow) == before
