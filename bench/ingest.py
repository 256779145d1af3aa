"""Ingestion end to end (source -> Great Expectations gate -> candle store -> ledger evidence -> Redis) against
the store-only write of the same candles, measured in the same run, on PostgreSQL (the SQL store) and InfluxDB.

    .venv/bin/python bench/ingest.py [--rows 525600] [--repeat 2]

The ingestion is ``marketkeeper.services.ingest.ingest_series`` with the synthetic source, as ``marketkeeper
ingest --source synthetic`` runs it: series lock, one ``data_quality_runs`` row per window, Redis updates. The
yardsticks get the candles already built: ``CandleStore.write`` of the whole frame, and for PostgreSQL a raw
text COPY of the same rows into an empty copy of the ``candles`` table. Every run goes into an emptied table
(or a fresh InfluxDB database), best of ``--repeat``, alternating. Great Expectations is imported and its
context built before the clock starts (a one-time cost per process, printed as info). Target: ingestion
>= 0.5x of the fastest raw path of its store. It creates and drops its own PostgreSQL and InfluxDB databases
and Redis keys.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from _common import Target, best_of, fastest, print_machine, report, throwaway_influxdb, throwaway_postgresql, timed
from candle_write import KEY, copy_text

from marketkeeper.ingest import DEFAULT_WINDOW, IngestReport, windows
from marketkeeper.ledger import DataQualityRun, create_ledger_engine, migrate
from marketkeeper.markets import MarketSpec
from marketkeeper.quality import check_candles
from marketkeeper.redis_client import RedisClient
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.sources import SyntheticSource
from marketkeeper.store_set import StoreConfig
from marketkeeper.stores import InfluxDBCandleStore, SQLCandleStore
from marketkeeper.stores.base import CandleStore

START = datetime(2023, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)
SEED = 7
RAW_TABLE = "candles_raw_copy"
REDIS_URL = "redis://127.0.0.1:6379/0"
GOAL = 0.5


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:>10,.0f} candles/s  ({rows:,} in {seconds:.2f} s)"


def source() -> SyntheticSource:
    return SyntheticSource(SEED, clock=lambda: NOW)


class Ingestion:
    """One ``ingest_series`` over ``[START, end)`` into the stores of ``config``, checked afterwards."""

    def __init__(self, config: StoreConfig, end: datetime) -> None:
        self.config, self.end = config, end
        self.market = MarketSpec(exchange=KEY.exchange, symbol=KEY.symbol, source=f"synthetic:{SEED}")
        self.windows = sum(1 for _ in windows(KEY, START, end, DEFAULT_WINDOW))

    def __call__(self) -> IngestReport:
        reports: list[int] = []
        done = ingest_series(
            self.config,
            IngestRequest(self.market, START, self.end),
            now=NOW,
            source=source(),
            progress=lambda r: reports.append(r.written),
        )
        if len(reports) != self.windows:
            raise SystemExit(f"{len(reports)} progress reports for {self.windows} windows")
        return done

    def check(self, got: IngestReport, engine: sa.Engine, store: CandleStore, rows: int) -> None:
        stored = store.count(KEY, START, self.end)
        with engine.connect() as conn:
            runs = conn.scalar(sa.select(sa.func.count()).select_from(DataQualityRun))
        if (got.written, stored, runs) != (rows, rows, self.windows):
            raise SystemExit(
                f"ingestion wrote {got.written:,}, the store holds {stored:,} and the ledger {runs} quality runs; "
                f"expected {rows:,}, {rows:,} and {self.windows}"
            )


def clear_ledger(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE candles, {RAW_TABLE}, data_quality_runs, quarantined_candles"))
        conn.execute(sa.text("CHECKPOINT"))


def bench_postgresql(
    url: str, engine: sa.Engine, frame: pd.DataFrame, config: StoreConfig, ingestion: Ingestion, repeat: int
) -> Target:
    rows = len(frame)
    payload = copy_text(frame)
    columns = (
        "exchange, symbol, timeframe, open_time, open, high, low, close, volume, quote_volume, trade_count, ingested_at"
    )

    def raw_copy() -> None:
        with engine.begin() as conn:
            driver = conn.connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(f"COPY {RAW_TABLE} ({columns}) FROM STDIN") as copy:  # type: ignore[union-attr]
                view = memoryview(payload)
                for begin in range(0, len(view), 8 << 20):
                    copy.write(view[begin : begin + (8 << 20)])

    store = SQLCandleStore(engine)
    raw_runs, write_runs, ingest_runs = [], [], []
    for _ in range(repeat):
        clear_ledger(engine)
        raw_runs.append(timed(raw_copy))
        clear_ledger(engine)
        write_runs.append(timed(lambda: store.write(KEY, frame)))
        if store.count(KEY, START, ingestion.end) != rows:
            raise SystemExit("the store-only write did not store every candle")
        clear_ledger(engine)
        seconds, got = best_of(1, ingestion)
        ingestion.check(got, engine, store, rows)
        ingest_runs.append(seconds)
    raw, write, ours = min(raw_runs), min(write_runs), min(ingest_runs)
    runs = f"best of {repeat}"
    print(f"  PostgreSQL raw text COPY, empty table       {rate(rows, raw)}  ({runs})")
    print(f"  PostgreSQL store-only write (upsert)        {rate(rows, write)}  ({runs})")
    print(f"  PostgreSQL ingest end to end                {rate(rows, ours)}  ({runs}, {ingestion.windows} windows)")
    print(f"    ingest / store-only write: {write / ours:.2f}x")
    name, best = fastest({"raw COPY": raw, "store-only write": write})
    return Target("PostgreSQL ingest / fastest raw path", best / ours, GOAL, against=f"fastest raw: {name}")


def bench_influxdb(engine: sa.Engine, frame: pd.DataFrame, ledger_url: str, redis: StoreConfig, repeat: int) -> Target:
    from marketkeeper.influxdb import InfluxDBClient

    rows = len(frame)
    with throwaway_influxdb() as client:
        url, database = client.url, client.database
        config = StoreConfig(
            ledger_url=ledger_url, influxdb=lambda: InfluxDBClient(url, database=database), redis=redis.redis
        )
        ingestion = Ingestion(config, START + timedelta(minutes=rows))
        store = InfluxDBCandleStore(client)

        def fresh() -> None:
            client.drop_database()
            client.create_database()
            clear_ledger(engine)

        write_runs, ingest_runs = [], []
        for _ in range(repeat):
            fresh()
            write_runs.append(timed(lambda: store.write(KEY, frame)))
            if store.count(KEY, START, ingestion.end) != rows:
                raise SystemExit("the store-only write did not store every candle")
            fresh()
            seconds, got = best_of(1, ingestion)
            ingestion.check(got, engine, store, rows)
            ingest_runs.append(seconds)
    write, ours = min(write_runs), min(ingest_runs)
    runs = f"best of {repeat}"
    print(f"  InfluxDB store-only write                   {rate(rows, write)}  ({runs}, gzip off, the default)")
    print(f"  InfluxDB ingest end to end                  {rate(rows, ours)}  ({runs}, {ingestion.windows} windows)")
    return Target("InfluxDB ingest / store-only write", write / ours, GOAL, against="fastest raw: store-only write")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=525_600, help="1m candles (default: one year, 525,600)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measured path; the best counts")
    parser.add_argument("--skip-influxdb", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    print_machine(f"ingest benchmark: {args.rows:,} 1m synthetic candles of {KEY}, windows of {DEFAULT_WINDOW:,}")
    end = START + timedelta(minutes=args.rows)
    seconds, batches = best_of(1, lambda: list(source().fetch_batches(KEY, START, end)))
    frame = pd.concat([b.frame for b in batches], ignore_index=True)
    print(f"  synthetic source alone                      {rate(len(frame), seconds)}  (info)")
    started = time.perf_counter()
    check_candles(KEY, frame.head(10), now=NOW)
    print(
        f"  Great Expectations import + context build   {time.perf_counter() - started:.2f} s once per process (info)"
    )
    seconds, _ = best_of(args.repeat, lambda: check_candles(KEY, frame.head(DEFAULT_WINDOW), now=NOW))
    print(f"  quality gate alone, one window              {rate(min(DEFAULT_WINDOW, len(frame)), seconds)}  (info)")

    prefix = f"mk_bench_ingest_{int(time.time())}:"
    redis = StoreConfig(ledger_url="", redis=lambda: RedisClient(REDIS_URL, prefix=prefix))
    targets: list[Target] = []
    try:
        with throwaway_postgresql(prefix="mk_bench_ingest") as url:
            migrate.upgrade(url)
            engine = create_ledger_engine(url)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(f"CREATE TABLE {RAW_TABLE} (LIKE candles INCLUDING ALL)"))
                if not args.skip_postgresql:
                    config = StoreConfig(ledger_url=url, redis=redis.redis)
                    ingestion = Ingestion(config, end)
                    targets.append(bench_postgresql(url, engine, frame, config, ingestion, args.repeat))
                if not args.skip_influxdb:
                    targets.append(bench_influxdb(engine, frame, url, redis, args.repeat))
            finally:
                engine.dispose()
    finally:
        client = RedisClient(REDIS_URL, prefix=prefix)
        keys = list(client.raw.scan_iter(match=f"{prefix}*"))
        if keys:
            client.raw.delete(*keys)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  peak RSS of this process                    {peak:,.0f} MB (info: holds the whole frame for the yardsticks)"
    )
    ok = report(targets)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
