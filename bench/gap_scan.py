"""Gap scans from a store: ``CandleStore.open_times`` (what gap detection reads) against reading the open-time
column alone, raw, in the same run. PostgreSQL: ``psql`` and psycopg draining ``COPY (SELECT open_time ..) TO
STDOUT`` (binary); InfluxDB: one InfluxQL query of a single field, drained as CSV and as JSON. Target (issue
10): ``open_times`` takes <= 1.5x the fastest raw path. A series with 1% of its candles missing, so the scan
finds gaps.

    .venv/bin/python bench/gap_scan.py [--rows 525600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from _common import (
    Target,
    best_of,
    fastest,
    print_machine,
    raw_influxql,
    report,
    throwaway_influxdb,
    throwaway_postgresql,
    time_command,
)
from candle_write import KEY, START, make_frame
from read import psql_argv
from sqlalchemy.engine import make_url

from marketkeeper.gaps import find_gaps
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.stores import CandleStore, InfluxDBCandleStore, SQLCandleStore

WHERE = "exchange = 'binance' AND symbol = 'BTC/USDT' AND timeframe = '1m'"
INFLUX_WHERE = "\"exchange\" = 'binance' AND \"symbol\" = 'BTC/USDT' AND \"timeframe\" = '1m'"
END = datetime(2200, 1, 1, tzinfo=UTC)


def holed(rows: int):  # type: ignore[no-untyped-def]
    frame = make_frame(rows)
    keep = np.random.default_rng(3).random(rows) >= 0.01
    return frame[keep].reset_index(drop=True)


def compare(store: CandleStore, raw: dict[str, float], repeat: int, expected: int, label: str) -> Target:
    seconds, times = best_of(repeat, lambda: store.open_times(KEY, START, END))
    if len(times) != expected:
        raise SystemExit(f"{label} open_times read {len(times):,}, expected {expected:,}")
    for path, s in raw.items():
        print(f"  {label} raw: {path:<48} {s:7.3f} s")
    last = START + timedelta(minutes=int((times[-1] - times[0]) // 60_000_000_000) + 1)
    gaps = len(find_gaps(times, "1m", START, last))
    print(f"  {label} CandleStore.open_times{'':<31} {seconds:7.3f} s  ({gaps:,} gaps found by find_gaps)")
    name, best = fastest(raw)
    return Target(f"{label} open_times / fastest raw (time)", seconds / best, 1.5, below=True, against=name)


def bench_postgresql(rows: int, repeat: int) -> Target:
    frame = holed(rows)
    with throwaway_postgresql(prefix="mk_bench_gaps") as url:
        migrate.upgrade(url)
        store = SQLCandleStore(create_ledger_engine(url), owns_engine=True)
        store.write(KEY, frame)
        statement = f"COPY (SELECT open_time FROM candles WHERE {WHERE} ORDER BY open_time) TO STDOUT (FORMAT binary)"  # noqa: S608
        conninfo = make_url(url).render_as_string(hide_password=False).replace("+psycopg", "")

        def drain() -> None:
            with psycopg.connect(conninfo) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
                for _ in copy:
                    pass

        psql = psql_argv(url, statement)
        raw = {
            "psql COPY open_time TO STDOUT (binary)": best_of(repeat, lambda: time_command(psql))[0],
            "psycopg drains COPY open_time (binary)": best_of(repeat, drain)[0],
        }
        target = compare(store, raw, repeat, len(frame), "PostgreSQL")
        store.close()
    return target


def bench_influxdb(rows: int, repeat: int) -> Target:
    frame = holed(rows)
    with throwaway_influxdb(prefix="mk_bench_gaps") as client:
        store = InfluxDBCandleStore(client)
        store.write(KEY, frame)
        q = f'SELECT "open" FROM "candles" WHERE {INFLUX_WHERE}'  # noqa: S608
        raw = raw_influxql(client, q, repeat)
        target = compare(store, raw, repeat, len(frame), "InfluxDB")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=525_600, help="1m candles of the series before holes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; the best counts")
    parser.add_argument("--skip-influxdb", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    print_machine(f"gap scan benchmark: open times of {args.rows:,} 1m candles (1% missing) of {KEY}")
    targets = []
    if not args.skip_postgresql:
        targets.append(bench_postgresql(args.rows, args.repeat))
    if not args.skip_influxdb:
        targets.append(bench_influxdb(args.rows, args.repeat))
    ok = report(targets)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
