"""Candle reads against the raw path of each store, measured in the same run, and the memory of a long read.

For each store: the store read API to a DataFrame (``CandleStore.read``) and the whole ``marketkeeper candles
--format csv`` command, each against the fastest raw path measured alongside (PostgreSQL: ``psql`` running
``COPY (SELECT ..) TO STDOUT`` binary and CSV, and psycopg draining the binary COPY; InfluxDB: one InfluxQL
query drained as CSV and as JSON). The command is compared with raw paths run as whole commands too (``psql``,
``curl``), start-up included. Then the peak RSS of ``candles --format csv`` over five years of 1m candles.
Targets (issue 10): reads >= 0.5x of the fastest raw path, the long read under 500 MB.

    .venv/bin/python bench/read.py [--rows 525600] [--rss-rows 2628000] [--repeat 2] [--rss-influxdb]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta

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
    user_env,
)
from candle_write import KEY, START, make_frame
from sqlalchemy.engine import make_url

from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.stores import CandleStore, InfluxDBCandleStore, SQLCandleStore

COLUMNS = "open_time, open, high, low, close, volume, quote_volume, trade_count"
WHERE = "exchange = 'binance' AND symbol = 'BTC/USDT' AND timeframe = '1m'"
FIELDS = '"open", "high", "low", "close", "volume", "quote_volume", "trade_count"'
INFLUX_WHERE = "\"exchange\" = 'binance' AND \"symbol\" = 'BTC/USDT' AND \"timeframe\" = '1m'"


def cli_argv(rows: int) -> list[str]:
    end = START + timedelta(minutes=rows)
    return [sys.executable, "-m", "marketkeeper", "candles", "-e", KEY.exchange, "-s", KEY.symbol, "-t", "1m",
            "--start", START.isoformat(), "--end", end.isoformat(), "--format", "csv"]  # fmt: skip


def base_env() -> dict[str, str]:
    return user_env(drop=("DATABASE_URL", "INFLUXDB_URL", "INFLUXDB_BUCKET", "INFLUXDB_TOKEN", "REDIS_URL"))


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> float:
    """Peak resident memory of one run of a command, output discarded. Measured by ``/usr/bin/time``: a child
    forked from this (large) process would report this process's pages as its own peak."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.strip()}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def psql_argv(url: str, statement: str) -> list[str]:
    u = make_url(url)
    return ["psql", "-X", "-q", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres",
            "-d", u.database or "", "-c", statement]  # fmt: skip


def compare(store: CandleStore, raw: dict[str, float], repeat: int, rows: int, label: str) -> Target:
    far = datetime(2200, 1, 1, tzinfo=UTC)
    seconds, frame = best_of(repeat, lambda: store.read(KEY, START, far))
    if len(frame) != rows:
        raise SystemExit(f"{label} read {len(frame):,} candles, expected {rows:,}")
    name, best = fastest(raw)
    for path, s in raw.items():
        print(f"  {label} raw: {path:<44} {s:7.3f} s")
    print(f"  {label} CandleStore.read -> DataFrame{'':<19} {seconds:7.3f} s  ({rows / seconds:,.0f} candles/s)")
    return Target(f"{label} read() / fastest raw", best / seconds, 0.5, against=name)


def compare_cli(raw_commands: dict[str, list[str]], env: dict[str, str], repeat: int, rows: int, label: str) -> Target:
    raw = {name: best_of(repeat, lambda argv=argv: time_command(argv, env))[0] for name, argv in raw_commands.items()}
    ours, _ = best_of(repeat, lambda: time_command(cli_argv(rows), env))
    for path, s in raw.items():
        print(f"  {label} raw command: {path:<36} {s:7.3f} s")
    print(f"  {label} marketkeeper candles --format csv{'':<15} {ours:7.3f} s")
    name, best = fastest(raw)
    return Target(f"{label} candles --format csv / fastest raw", best / ours, 0.5, against=name)


def bench_postgresql(rows: int, rss_rows: int, repeat: int) -> list[Target]:
    targets = []
    with throwaway_postgresql(prefix="mk_bench_read") as url:
        migrate.upgrade(url)
        store = SQLCandleStore(create_ledger_engine(url), owns_engine=True)
        store.write(KEY, make_frame(rows))
        select = f"SELECT {COLUMNS} FROM candles WHERE {WHERE} ORDER BY open_time"  # noqa: S608
        conninfo = make_url(url).render_as_string(hide_password=False).replace("+psycopg", "")

        def drain(fmt: str) -> None:
            statement = f"COPY ({select}) TO STDOUT (FORMAT {fmt})"
            with psycopg.connect(conninfo) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
                for _ in copy:
                    pass

        raw = {
            f"psql COPY TO STDOUT ({fmt})": best_of(repeat, lambda fmt=fmt: time_command(
                psql_argv(url, f"COPY ({select}) TO STDOUT (FORMAT {fmt})")))[0]
            for fmt in ("binary", "csv")
        }  # fmt: skip
        raw["psycopg drains COPY TO STDOUT (binary)"] = best_of(repeat, lambda: drain("binary"))[0]
        targets.append(compare(store, raw, repeat, rows, "PostgreSQL"))
        env = {**base_env(), "DATABASE_URL": url}
        raw_cli = {
            "psql \\copy (SELECT ..) TO STDOUT csv header": psql_argv(url, f"\\copy ({select}) to stdout csv header")
        }
        targets.append(compare_cli(raw_cli, env, repeat, rows, "PostgreSQL"))
        if rss_rows:
            store.write(KEY, make_frame(rss_rows))
            mb = peak_rss_mb(cli_argv(rss_rows), env)
            print(f"  PostgreSQL candles --format csv over {rss_rows:,} candles: peak RSS {mb:,.0f} MB")
            targets.append(
                Target(f"PostgreSQL candles csv, {rss_rows:,} rows, peak RSS", mb, 500, below=True, unit=" MB")
            )
        store.close()
    return targets


def bench_influxdb(rows: int, rss_rows: int, repeat: int) -> list[Target]:
    targets = []
    # A generous read timeout: on a loaded machine InfluxDB can pause longer than the default 10 s between chunks.
    with throwaway_influxdb(prefix="mk_bench_read", timeout=120.0) as client:
        store = InfluxDBCandleStore(client)
        store.write(KEY, make_frame(rows))
        q = f'SELECT {FIELDS} FROM "candles" WHERE {INFLUX_WHERE}'  # noqa: S608
        raw = raw_influxql(client, q, repeat)
        targets.append(compare(store, raw, repeat, rows, "InfluxDB"))
        env = {**base_env(), "INFLUXDB_URL": client.url, "INFLUXDB_BUCKET": client.database,
               "MARKETKEEPER_HOME": tempfile.mkdtemp(prefix="mk-bench-read-")}  # fmt: skip
        form = ["--data-urlencode", f"db={client.database}", "--data-urlencode", f"q={q}"]
        curl = [
            "curl",
            "-sS",
            "-f",
            "-XPOST",
            f"{client.url}/query",
            "-H",
            "Accept: application/csv",
            "-o",
            "/dev/null",
        ]
        curl += form
        targets.append(compare_cli({"curl, one query, Accept: application/csv": curl}, env, repeat, rows, "InfluxDB"))
        if rss_rows:
            store.write(KEY, make_frame(rss_rows))
            mb = peak_rss_mb(cli_argv(rss_rows), env)
            print(f"  InfluxDB candles --format csv over {rss_rows:,} candles: peak RSS {mb:,.0f} MB")
            targets.append(
                Target(f"InfluxDB candles csv, {rss_rows:,} rows, peak RSS", mb, 500, below=True, unit=" MB")
            )
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=525_600, help="1m candles read (default one year)")
    parser.add_argument("--rss-rows", type=int, default=2_628_000, help="candles of the memory check (0: skip)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per path; the best counts")
    parser.add_argument("--rss-influxdb", action="store_true", help="run the memory check on InfluxDB too")
    parser.add_argument("--skip-influxdb", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    print_machine(f"read benchmark: {args.rows:,} 1m candles of {KEY}")
    targets: list[Target] = []
    if not args.skip_postgresql:
        targets += bench_postgresql(args.rows, args.rss_rows, args.repeat)
    if not args.skip_influxdb:
        targets += bench_influxdb(args.rows, args.rss_rows if args.rss_influxdb else 0, args.repeat)
    ok = report(targets)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
