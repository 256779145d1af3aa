"""Start-up: the wall time of ``marketkeeper candles`` for one day of 1m candles, as a user runs it, against the
fastest raw path measured in the same run.

    .venv/bin/python bench/startup.py [--runs 5]

The command runs as a whole new process (interpreter start, imports, settings, store round trip, printing),
once on the SQL store (a throwaway PostgreSQL database, migrated) and once on InfluxDB (a throwaway database),
with ``REDIS_URL`` set as a deployment sets it, in a user's environment (``_common.user_env``: Python keeps its
bytecode cache, which the warm-up run writes). The raw paths: a bare interpreter (``python -c pass``),
``psql -c 'select ...'`` of the same day, and one InfluxQL query of it with ``curl``. Best of ``--runs`` after
one warm-up. Target (issue 10): under 1 s of wall time for each store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    INFLUXDB_URL,
    Target,
    fastest,
    print_machine,
    report,
    throwaway_influxdb,
    throwaway_postgresql,
    user_env,
)
from _common import time_command as run
from sqlalchemy.engine import make_url

from marketkeeper.candles import SeriesKey

KEY = SeriesKey.of("binance", "BTC/USDT", "1m")
DAY = datetime(2024, 1, 1, tzinfo=UTC)
GOAL_SECONDS = 1.0
# The raw paths' queries of the same day: constants, so nothing is interpolated into them.
RAW_SELECT = (
    "select open_time, open, high, low, close, volume from candles where exchange = 'binance' "
    "and symbol = 'BTC/USDT' and timeframe = '1m' and open_time >= '2024-01-01T00:00:00+00:00' "
    "and open_time < '2024-01-02T00:00:00+00:00' order by open_time"
)
RAW_INFLUXQL = "SELECT * FROM candles WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-02T00:00:00Z'"


def one_day() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    close = np.round(42_000 + np.cumsum(rng.normal(0, 10, 1440)), 2)
    return pd.DataFrame(
        {
            "open_time": pd.date_range(DAY, periods=1440, freq="1min", tz="UTC"),
            "open": close,
            "high": close + 5,
            "low": close - 5,
            "close": close,
            "volume": np.round(rng.gamma(2.0, 3.0, 1440), 8),
        }
    )


def best(runs: int, argv: list[str], env: dict[str, str]) -> float:
    run(argv, env)  # warm-up: the OS file cache, the server's plan cache
    return min(run(argv, env) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per command after one warm-up; the best counts")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    print_machine(f"start-up benchmark: `marketkeeper candles` for one day ({KEY}, {DAY:%Y-%m-%d})")

    from marketkeeper.ledger import create_ledger_engine, migrate
    from marketkeeper.stores.influxdb import InfluxDBCandleStore
    from marketkeeper.stores.sql import SQLCandleStore

    cli = str(Path(sys.executable).with_name("marketkeeper"))
    command = [cli, "candles", "-e", KEY.exchange, "-s", KEY.symbol, "-t", "1m"]
    command += ["--start", DAY.date().isoformat(), "--end", (DAY + timedelta(days=1)).date().isoformat()]
    base_env = user_env(drop=("DATABASE_URL", "INFLUXDB_"))
    base_env["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    frame = one_day()
    timings: dict[str, float] = {}
    with (
        throwaway_postgresql(prefix="mk_bench_startup") as url,
        throwaway_influxdb(prefix="mk_bench_startup") as influx,
    ):
        migrate.upgrade(url)
        engine = create_ledger_engine(url)
        try:
            SQLCandleStore(engine).write(KEY, frame)
        finally:
            engine.dispose()
        InfluxDBCandleStore(influx).write(KEY, frame)
        sql_env = {**base_env, "DATABASE_URL": url}
        influx_env = {**sql_env, "INFLUXDB_URL": INFLUXDB_URL, "INFLUXDB_BUCKET": influx.database}

        raw: dict[str, float] = {
            "bare interpreter: python -c pass": best(args.runs, [sys.executable, "-c", "pass"], base_env)
        }
        pg = make_url(url)
        psql = shutil.which("psql")
        if psql:
            argv = [
                psql,
                "-X",
                "-q",
                "-h",
                pg.host or "127.0.0.1",
                "-p",
                str(pg.port or 5432),
                "-U",
                pg.username or "postgres",
            ]
            raw["psql -c 'select ...' of the day"] = best(
                args.runs, [*argv, "-d", pg.database or "", "-c", RAW_SELECT], base_env
            )
        curl = shutil.which("curl")
        if curl:
            argv = [curl, "-sf", "-G", f"{INFLUXDB_URL}/query", "--data-urlencode", f"db={influx.database}"]
            raw["curl one InfluxQL query of the day"] = best(
                args.runs, [*argv, "--data-urlencode", f"q={RAW_INFLUXQL}"], base_env
            )
        timings["SQL store (PostgreSQL)"] = best(args.runs, command, sql_env)
        timings["InfluxDB"] = best(args.runs, command, influx_env)

    runs = f"best of {args.runs}"
    for name, seconds in raw.items():
        print(f"  raw: {name:<40} {seconds * 1000:8.1f} ms  ({runs})")
    floor_name, floor = fastest(raw)
    for store, seconds in timings.items():
        slower = seconds / floor
        print(f"  marketkeeper candles, one day, {store:<22} {seconds * 1000:8.1f} ms  ({runs}; {slower:.0f}x the raw)")
    targets = [
        Target(
            f"candles one day, {store}: wall",
            seconds,
            GOAL_SECONDS,
            below=True,
            unit=" s",
            against=f"fastest raw: {floor_name}, {floor * 1000:.0f} ms",
        )
        for store, seconds in timings.items()
    ]
    return 1 if not report(targets) and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
