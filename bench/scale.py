"""Per-market cost of a scheduled ``ohlcv_ingest`` run with the real scheduler: task time per market (the sum of
every task instance's duration in the run, from the API, divided by the markets) and the run's wall time, at
several market counts, for the batched design (default batch size) against today's one market per task.

    .venv/bin/python bench/scale.py                       # make bench: 10 markets, batched only
    .venv/bin/python bench/scale.py --sizes 10,100,500 --single-upto 10   # make bench-scale

It starts a throwaway Airflow (api-server, scheduler, dag-processor, LocalExecutor; tests/airflow_server.py) on
a throwaway PostgreSQL ledger and InfluxDB database, declares N synthetic 1m markets through the Variable, and
triggers one run per figure over one hour of open times (60 candles per market), as an hourly run ingests,
after one unmeasured warm-up run (a running deployment's components are warm).
Target: <= 0.5 s of task time per market with the default batch size, at every size. It checks that every
candle was stored and that the run emitted one Asset event per market.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import Target, print_machine, report, throwaway_influxdb, throwaway_postgresql

# tests/airflow_server.py starts the real components; bench scripts run as files, so put the project on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import migrate
from marketkeeper.services.batch import DEFAULT_BATCH_SIZE
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from tests.airflow_server import AirflowServer, running_airflow

GOAL = 0.5
EXCHANGE = "scalebench"
HOUR0 = datetime(2024, 3, 1, tzinfo=UTC)
RUN_TIMEOUT = 1800.0


def markets_yaml(count: int) -> str:
    lines = ["markets:"]
    for i in range(count):
        lines += [
            f"  - exchange: {EXCHANGE}",
            f"    symbol: M{i:04d}/USDT",
            "    base_timeframe: 1m",
            f"    source: synthetic:{i + 1}",
        ]
    return "\n".join(lines) + "\n"


def _pages(server: AirflowServer, path: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = server.api("GET", path, params={"limit": 100, "offset": len(items)})
        items += page[key]
        if not page[key] or len(items) >= page["total_entries"]:
            return items


def run_once(server: AirflowServer, count: int, batch: int, hour: datetime) -> dict[str, Any]:
    """Trigger one run over ``[hour, hour + 1h)`` and wait for it; its figures."""
    conf = {"start": hour.isoformat(), "end": (hour + timedelta(hours=1)).isoformat(), "batch_size": batch}
    run = server.api("POST", "/api/v2/dags/ohlcv_ingest/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    path = f"/api/v2/dags/ohlcv_ingest/dagRuns/{run_id}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while (state := server.api("GET", path))["state"] not in ("success", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} not finished after {RUN_TIMEOUT:.0f} s\n{server.log_tail()}")
        time.sleep(2.0)
    if state["state"] != "success":
        raise RuntimeError(f"run {run_id} of {count} markets (batch {batch}) failed\n{server.log_tail()}")
    tis = _pages(server, f"{path}/taskInstances", "task_instances")
    mapped = [t for t in tis if t["task_id"] == "ingest"]
    wall = datetime.fromisoformat(state["end_date"]) - datetime.fromisoformat(state["start_date"])
    events = server.api("GET", "/api/v2/assets/events", params={"source_run_id": run_id, "limit": 1})
    return {
        "tasks": len(tis),
        "mapped": len(mapped),
        "task_s": sum(float(t["duration"] or 0) for t in tis),
        "mapped_s": sum(float(t["duration"] or 0) for t in mapped),
        "slowest_s": max(float(t["duration"] or 0) for t in mapped),
        "wall_s": wall.total_seconds(),
        "events": int(events["total_entries"]),
        # Where the task time went: each task's duration, mapped ones in map-index order.
        "durations": {
            f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]: t["duration"]
            for t in sorted(tis, key=lambda t: (t["task_id"], t["map_index"]))
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10", help="market counts, comma-separated (default 10)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_SIZE, help="the batched design's batch size")
    parser.add_argument(
        "--single-upto", type=int, default=0, help="also run one market per task up to this many markets"
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print_machine("ohlcv_ingest with the real scheduler: task time per market, batched against one market per task")
    print(f"  LocalExecutor, parallelism 3, pool exchange_api 4; one hour of 1m candles per market; batch {args.batch}")

    rows: list[tuple[int, int, dict[str, Any]]] = []
    with throwaway_postgresql() as ledger_url, throwaway_influxdb() as influxdb:
        migrate.upgrade(ledger_url)
        env = {"DATABASE_URL": ledger_url, "INFLUXDB_URL": influxdb.url, "INFLUXDB_BUCKET": influxdb.database}
        with running_airflow(env) as server:
            # A deployment's hourly run finds its components warm: the api-server's first execution-API calls
            # and the executor's first workers (forked from the preloading forkserver) cost seconds once, at
            # start-up. One run of one market, not measured, pays them here.
            server.set_variable("marketkeeper_markets", markets_yaml(1))
            run_once(server, 1, args.batch, HOUR0 - timedelta(hours=1))
            hour = HOUR0
            for count in sizes:
                server.set_variable("marketkeeper_markets", markets_yaml(count))
                designs = [args.batch] + ([1] if count <= args.single_upto and args.batch != 1 else [])
                for batch in designs:
                    figures = run_once(server, count, batch, hour)
                    store = InfluxDBCandleStore(influxdb)
                    stored = sum(
                        store.count(SeriesKey.of(EXCHANGE, f"M{i:04d}/USDT", "1m"), hour, hour + timedelta(hours=1))
                        for i in range(count)
                    )
                    if stored != 60 * count or figures["events"] != count:
                        raise RuntimeError(f"{count} markets: {stored} candles, {figures['events']} Asset events")
                    rows.append((count, batch, figures))
                    print(f"  {count} markets, batch {batch}: {json.dumps(figures)}", flush=True)
                    hour += timedelta(hours=1)

    print()
    print(f"  {'markets':>7} {'batch':>5} {'tasks':>5} {'task s/market':>13} {'mapped s/market':>15} "
          f"{'slowest task':>12} {'run wall':>9}")  # fmt: skip
    for count, batch, f in rows:
        print(
            f"  {count:>7} {batch:>5} {f['tasks']:>5} {f['task_s'] / count:>12.2f}s {f['mapped_s'] / count:>14.2f}s "
            f"{f['slowest_s']:>11.1f}s {f['wall_s']:>8.1f}s"
        )
    targets = [
        Target(
            f"task time per market, {count} markets, batch {batch}", f["task_s"] / count, GOAL, below=True, unit=" s"
        )
        for count, batch, f in rows
        if batch == args.batch
    ]
    return 0 if report(targets) else 1


if __name__ == "__main__":
    sys.exit(main())
