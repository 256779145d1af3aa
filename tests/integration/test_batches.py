"""Batches of markets (:mod:`marketkeeper.services.batch`, the ``ohlcv_ingest`` batch tasks) against the real
PostgreSQL and InfluxDB, and a real Airflow (api-server, scheduler, dag-processor): a batch with one failing
market still writes the others and fails naming it; a retry redoes only the failed one; the Asset events stay
exactly one per series written; the mapped tasks stay on the ``exchange_api`` pool, one exchange per batch.

The failing market reads Binance kline files from a directory that does not exist yet; the test creates it
before the retry, so the same market succeeds on the next try.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import DataQualityRun, create_ledger_engine, migrate
from marketkeeper.markets import MarketSpec
from marketkeeper.services.batch import BatchFailedError, Checkpoint, batch_markets, ingest_markets
from marketkeeper.services.ingest import IngestRequest
from marketkeeper.store_set import StoreConfig
from marketkeeper.stores.sql import SQLCandleStore
from tests.airflow_server import AirflowServer, running_airflow
from tests.conftest import PG_TEST_DB, _drop_pg_database, _recreate_pg_database
from tests.integration.test_ohlcv_ingest_dag import candle_event

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

EXCHANGE, OTHER = "batchtest", "batchother"
HOUR = datetime(2024, 5, 6, 3, tzinfo=UTC)
END = HOUR + timedelta(hours=1)


def kline_file(directory: Path, symbol: str) -> None:
    """A Binance 1m kline file holding the first four hours of HOUR's day (every candle valid)."""
    directory.mkdir(parents=True, exist_ok=True)
    day = HOUR.replace(hour=0)
    lines = []
    for i in range(4 * 60):
        opened = int((day + timedelta(minutes=i)).timestamp()) * 1000
        lines.append(f"{opened},2.0,3.0,1.0,2.5,1.5,{opened + 59_999},3.0,7,0.5,1.0,0")
    (directory / f"{symbol.replace('/', '')}-1m-{day:%Y-%m-%d}.csv").write_text("\n".join(lines) + "\n")


def markets(files: Path) -> list[dict[str, Any]]:
    return [
        {"exchange": EXCHANGE, "symbol": "AAA/USDT", "source": "synthetic:11"},
        {"exchange": EXCHANGE, "symbol": "FAIL/USDT", "source": f"files:{files}"},
        {"exchange": EXCHANGE, "symbol": "CCC/USDT", "source": "synthetic:13"},
        {"exchange": OTHER, "symbol": "DDD/USDT", "source": "synthetic:14"},
    ]


def keys(files: Path) -> list[SeriesKey]:
    return [SeriesKey.of(m["exchange"], m["symbol"], "1m") for m in markets(files)]


def quality_runs(engine: sa.Engine) -> dict[str, int]:
    """``data_quality_runs`` rows per symbol: one per market ingested (one window each)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(DataQualityRun.symbol, sa.func.count())
            .where(DataQualityRun.exchange.in_([EXCHANGE, OTHER]))
            .group_by(DataQualityRun.symbol)
        ).all()
    return {str(symbol): int(n) for symbol, n in rows}


@pytest.fixture(scope="module")
def ledger_url() -> Iterator[str]:
    name = f"{PG_TEST_DB}_batches"
    url = _recreate_pg_database(name)
    migrate.upgrade(url)
    yield url
    _drop_pg_database(name)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[sa.Engine]:
    engine = create_ledger_engine(ledger_url)
    yield engine
    with engine.begin() as conn:
        for table in ("quarantined_candles", "data_quality_runs", "candles", "markets"):
            conn.execute(
                sa.text(f"DELETE FROM {table} WHERE exchange IN ('{EXCHANGE}', '{OTHER}')")  # noqa: S608
            )
        conn.execute(sa.text("DELETE FROM system_events WHERE event_type LIKE 'batch%'"))
    engine.dispose()


def test_batches_hold_one_exchange_each_in_declaration_order(tmp_path: Path) -> None:
    specs = [MarketSpec.model_validate(m) for m in markets(tmp_path)]
    cut = batch_markets(specs, 2)
    assert [[s.symbol for s in batch] for batch in cut] == [["DDD/USDT"], ["AAA/USDT", "FAIL/USDT"], ["CCC/USDT"]]
    with pytest.raises(ValueError, match="at least 1"):
        batch_markets(specs, 0)


def test_a_failing_market_leaves_the_others_written_and_a_retry_redoes_only_it(
    ledger: sa.Engine, ledger_url: str, tmp_path: Path
) -> None:
    files = tmp_path / "klines"
    config = StoreConfig(ledger_url=ledger_url)
    requests = [IngestRequest(MarketSpec.model_validate(m), HOUR, END) for m in markets(files)[:3]]
    scope = {"dag_id": "test", "run_id": "r1", "task_id": "ingest", "map_index": "0"}

    def checkpoint(attempt: int) -> Checkpoint:
        return Checkpoint(scope=scope, attempt=attempt, keep=lambda report: {"written": report.written})

    first = ingest_markets(config, requests, checkpoint=checkpoint(1))
    [failed] = first.failed
    assert failed.label == f"{EXCHANGE}:FAIL/USDT:1m"
    assert failed.error is not None and failed.error.startswith("SourceError: ") and str(files) in failed.error
    with pytest.raises(BatchFailedError, match=rf"1 of 3 market\(s\) failed: {EXCHANGE}:FAIL/USDT:1m: SourceError"):
        first.raise_for_failures()
    store = SQLCandleStore(ledger)
    aaa, fail, ccc = keys(files)[:3]
    assert [store.count(k, HOUR, END) for k in (aaa, fail, ccc)] == [60, 0, 60]
    assert quality_runs(ledger) == {"AAA/USDT": 1, "CCC/USDT": 1}

    kline_file(files, "FAIL/USDT")
    second = ingest_markets(config, requests, checkpoint=checkpoint(2))
    assert second.failed == []
    # The completed markets come back from the first try's record, not redone; only the failed one ran.
    assert [(o.label, o.recorded, o.report is not None) for o in second.outcomes] == [
        (str(aaa), {"written": 60}, False),
        (str(fail), None, True),
        (str(ccc), {"written": 60}, False),
    ]
    assert [store.count(k, HOUR, END) for k in (aaa, fail, ccc)] == [60, 60, 60]
    assert quality_runs(ledger) == {"AAA/USDT": 1, "FAIL/USDT": 1, "CCC/USDT": 1}

    # Once a try completed the whole batch, a later try is a deliberate re-run: everything is redone.
    third = ingest_markets(config, requests, checkpoint=checkpoint(3))
    assert all(o.report is not None and o.recorded is None for o in third.outcomes)
    assert quality_runs(ledger) == {"AAA/USDT": 2, "FAIL/USDT": 2, "CCC/USDT": 2}


def test_a_batch_is_screened_in_one_gate_run_and_a_bad_candle_is_quarantined_in_its_own_market_only(
    ledger: sa.Engine, ledger_url: str, tmp_path: Path
) -> None:
    files = tmp_path / "klines"
    kline_file(files, "BAD/USDT")
    path = files / f"BADUSDT-1m-{HOUR:%Y-%m-%d}.csv"
    lines = path.read_text().splitlines()
    row = 3 * 60 + 7  # 03:07, inside the hour ingested
    fields = lines[row].split(",")
    fields[2], fields[3] = "0.5", "1.0"  # high 0.5 below low 1.0 (and below open and close)
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    clean = [
        {"exchange": EXCHANGE, "symbol": s, "source": f"synthetic:{i}"} for i, s in enumerate(["AAA/USDT", "CCC/USDT"])
    ]
    bad = {"exchange": EXCHANGE, "symbol": "BAD/USDT", "source": f"files:{files}"}
    config = StoreConfig(ledger_url=ledger_url)

    def requests(specs: list[dict[str, Any]]) -> list[IngestRequest]:
        return [IngestRequest(MarketSpec.model_validate(m), HOUR, END, max_failed_fraction=0.05) for m in specs]

    def evidence() -> dict[str, tuple[int, int, Any]]:
        with ledger.connect() as conn:
            rows = conn.execute(
                sa.select(DataQualityRun.symbol, DataQualityRun.rows_checked, DataQualityRun.rows_failed,
                          DataQualityRun.results).where(DataQualityRun.exchange == EXCHANGE)
            ).all()  # fmt: skip
        return {str(r[0]): (int(r[1]), int(r[2]), r[3]["gx"].get("union")) for r in rows}

    # Clean markets: one run over both windows is every market's evidence.
    assert ingest_markets(config, requests(clean)).failed == []
    union = {"windows": 2, "rows": 120}
    assert evidence() == {"AAA/USDT": (60, 0, union), "CCC/USDT": (60, 0, union)}

    # One bad candle in the union: each window is judged alone, the bad one's row named exactly.
    with ledger.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM data_quality_runs WHERE exchange = '{EXCHANGE}'"))  # noqa: S608
    report = ingest_markets(config, requests([clean[0], bad, clean[1]]))
    assert report.failed == []
    assert [(o.report.written, o.report.quarantined) for o in report.outcomes if o.report] == [
        (60, 0),
        (59, 1),
        (60, 0),
    ]
    assert evidence() == {"AAA/USDT": (60, 0, None), "BAD/USDT": (60, 1, None), "CCC/USDT": (60, 0, None)}
    with ledger.connect() as conn:
        quarantined = conn.execute(
            sa.text("SELECT symbol, open_time, failed_expectation FROM quarantined_candles WHERE exchange = :e"),
            {"e": EXCHANGE},
        ).all()
    [(symbol, opened, failed)] = quarantined
    assert (symbol, opened) == ("BAD/USDT", HOUR + timedelta(minutes=7))
    assert "expect_column_pair_values_a_to_be_greater_than_b(high, low)" in failed
    store = SQLCandleStore(ledger)
    bad_key = SeriesKey.of(EXCHANGE, "BAD/USDT", "1m")
    assert store.count(bad_key, HOUR, END) == 59


# --- the same through a real Airflow -------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow(ledger_url: str) -> Iterator[AirflowServer]:
    with running_airflow({"DATABASE_URL": ledger_url}) as server:
        yield server


def wait_for(server: AirflowServer, what: str, check: Any, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f}s\n{server.log_tail()}"
        time.sleep(1.0)
    return found


def test_a_dag_run_with_a_failing_market_fails_its_batch_naming_it_and_the_retry_completes_it(
    airflow: AirflowServer, ledger: sa.Engine, tmp_path: Path
) -> None:
    import yaml

    files = tmp_path / "klines"
    airflow.set_variable("marketkeeper_markets", yaml.safe_dump({"markets": markets(files)}))
    conf = {"start": HOUR.isoformat(), "end": END.isoformat()}
    run = airflow.api("POST", "/api/v2/dags/ohlcv_ingest/dagRuns", json={"logical_date": None, "conf": conf})
    run_path = f"/api/v2/dags/ohlcv_ingest/dagRuns/{run['dag_run_id']}"

    def batches() -> list[dict[str, Any]]:
        tis = airflow.api("GET", f"{run_path}/taskInstances", params={"task_id": "ingest"})["task_instances"]
        return sorted([t for t in tis if t["task_id"] == "ingest"], key=lambda t: t["map_index"])

    def settled() -> list[dict[str, Any]] | None:
        found = batches()
        done = len(found) == 2 and all(t["state"] in ("success", "up_for_retry", "failed") for t in found)
        return found if done else None

    other, ours = wait_for(airflow, "settled batches", settled)
    # One batch per exchange, both on the exchange pool; each names its markets, the failed one its failure.
    assert (other["pool"], ours["pool"]) == ("exchange_api", "exchange_api")
    assert (other["state"], other["rendered_map_index"]) == ("success", f"{OTHER}:DDD/USDT:1m")
    assert ours["state"] == "up_for_retry", airflow.task_logs()[-4000:]
    # Airflow resets a retried try's label for the next try (the label reads "FAILED 1/3: ..." only once the
    # task has failed for good); the try's log and its XCom name the failed market and the cause.
    assert f"{EXCHANGE}:FAIL/USDT:1m failed: SourceError: " in airflow.task_logs()
    xcom = airflow.api(
        "GET", f"{run_path}/taskInstances/ingest/xcomEntries/failed", params={"map_index": ours["map_index"]}
    )
    [entry] = json.loads(xcom["value"]) if isinstance(xcom["value"], str) else xcom["value"]
    assert entry["market"] == f"{EXCHANGE}:FAIL/USDT:1m" and entry["error"].startswith("SourceError: ")
    store = SQLCandleStore(ledger)
    aaa, fail, ccc, ddd = keys(files)
    assert [store.count(k, HOUR, END) for k in (aaa, fail, ccc, ddd)] == [60, 0, 60, 60]

    # Fix the cause and retry now (as Clear in the UI does) instead of waiting for the retry delay.
    kline_file(files, "FAIL/USDT")
    airflow.api(
        "POST",
        "/api/v2/dags/ohlcv_ingest/clearTaskInstances",
        json={
            "dag_run_id": run["dag_run_id"],
            "task_ids": [["ingest", ours["map_index"]]],
            "dry_run": False,
            "only_failed": False,
        },
    )
    state = wait_for(
        airflow, "finished run", lambda: (r := airflow.api("GET", run_path))["state"] in ("success", "failed") and r
    )
    assert state["state"] == "success", airflow.log_tail()
    retried = next(t for t in batches() if t["map_index"] == ours["map_index"])
    assert retried["try_number"] == 2 and retried["rendered_map_index"].startswith(f"{EXCHANGE} (3): AAA/USDT:1m")
    assert [store.count(k, HOUR, END) for k in (aaa, fail, ccc, ddd)] == [60, 60, 60, 60]
    # Only the failed market ran again: one quality run per market.
    assert quality_runs(ledger) == {"AAA/USDT": 1, "FAIL/USDT": 1, "CCC/USDT": 1, "DDD/USDT": 1}

    # Exactly one Asset event per series, each with the documented extra, the retried batch's included.
    answer = airflow.api("GET", "/api/v2/assets/events", params={"source_run_id": run["dag_run_id"], "limit": 100})
    seen = sorted((e["uri"], e["extra"], e["source_task_id"], e["source_map_index"]) for e in answer["asset_events"])
    expected = sorted(
        (ev["uri"], ev["extra"], "ingest", index)
        for index, key in ((ours["map_index"], aaa), (ours["map_index"], fail), (ours["map_index"], ccc), (0, ddd))
        for ev in [candle_event(key, HOUR, END, 60, "ingest")]
    )
    assert seen == expected
