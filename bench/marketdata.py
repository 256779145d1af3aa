"""The market-data API against the store's raw read, measured in the same run (issue 14).

One year of 1m candles in a throwaway PostgreSQL database (``--influxdb``: in a throwaway InfluxDB database too),
Redis DB 15 under a key prefix of this run's own. Figures:

- uncached ``get_candles`` of the year against ``CandleStore.read`` of the same range (target >= 0.5x);
- a cached repeat against the uncached read (target >= 10x faster): the provider's own repeat (one version check
  in Redis, then the frame it kept), and a hit moved out of Redis whole (what another process sees first);
- 32 threads each reading random one-day windows uncached in a bounded loop, against one thread doing the same
  reads: aggregate throughput ratio (target >= 1x: the readers sustain it) and p99 latency (reported);
- the HTTP API's CSV of the year (``marketkeeper serve`` in its own process on a loopback port, drained by
  httpx) against the Python API's uncached ``get_candles`` (target: within 2x of its time).

    .venv/bin/python bench/marketdata.py [--rows 525600] [--repeat 3] [--threads 32] [--reads 20] [--influxdb]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

import httpx
import numpy as np
import redis
from _common import Target, best_of, print_machine, report, throwaway_influxdb, throwaway_postgresql
from candle_write import KEY, START, make_frame

from marketkeeper.ledger import migrate
from marketkeeper.marketdata import HistoricalDataProvider
from marketkeeper.markets import MarketSpec
from marketkeeper.redis_client import RedisClient
from marketkeeper.store_set import StoreConfig, StoreSet

T = TypeVar("T")
REDIS_URL = "redis://127.0.0.1:6379/15"
SPEC = MarketSpec(exchange=KEY.exchange, symbol=KEY.symbol, base_timeframe="1m", source="synthetic")
API_KEY = "bench-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interleaved(repeat: int, *actions: Callable[[], T]) -> list[tuple[float, T]]:
    """Best wall time and last result of each action, the actions run in turn ``repeat`` times."""
    best = [float("inf")] * len(actions)
    results: list[T] = [None] * len(actions)  # type: ignore[list-item]
    for _ in range(max(1, repeat)):
        for i, action in enumerate(actions):
            started = time.perf_counter()
            results[i] = action()
            best[i] = min(best[i], time.perf_counter() - started)
    return list(zip(best, results, strict=True))


def serve_env(config: StoreConfig) -> dict[str, str]:
    """The environment of `marketkeeper serve` on the same stores (no Redis: a CSV export is never cached)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "REDIS_", "MARKETKEEPER_"))}
    env |= {
        "DATABASE_URL": config.ledger_url,
        "MARKETKEEPER_MARKETS": json.dumps({"markets": [SPEC.model_dump(mode="json", exclude_none=True)]}),
        "MARKETKEEPER_API_KEYS": API_KEY,
    }
    if config.influxdb is not None:
        client = config.influxdb()
        env |= {"INFLUXDB_URL": client.url, "INFLUXDB_BUCKET": client.database}
        client.close()
    return env


def concurrent_reads(read: Callable[[int], object], days: int, threads: int, reads: int) -> tuple[float, list[float]]:
    """Reads per second of ``threads`` threads each doing ``reads`` one-day reads, and every read's latency."""
    rng = random.Random(7)
    plan = [[rng.randrange(days) for _ in range(reads)] for _ in range(threads)]
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(picks: list[int]) -> None:
        for day in picks:
            started = time.perf_counter()
            read(day)
            with lock:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(worker, plan))
    return threads * reads / (time.perf_counter() - started), latencies


def run(label: str, config: StoreConfig, rows: int, repeat: int, threads: int, reads: int) -> list[Target]:
    end = START + timedelta(minutes=rows)
    with StoreSet.open(config) as stores:
        started = time.perf_counter()
        stores.candles.write(KEY, make_frame(rows))
        print(f"  {label}: wrote {rows:,} candles in {time.perf_counter() - started:.1f} s", flush=True)
    uncached = HistoricalDataProvider(config, markets=[SPEC], cache=False)
    cached = HistoricalDataProvider(config, markets=[SPEC], cache_max_entry_bytes=256 * 1024 * 1024)
    # Every hit out of Redis itself (no frames kept in memory): what a second process sees first.
    shared = HistoricalDataProvider(
        config, markets=[SPEC], cache_max_entry_bytes=256 * 1024 * 1024, cache_local_bytes=0
    )
    try:
        with StoreSet.open(config) as stores:
            # Interleaved, so a burst of load from other work on this machine hits both paths alike.
            (raw_s, raw), (ours_s, ours) = interleaved(
                repeat,
                lambda: stores.candles.read(KEY, START, end),
                lambda: uncached.get_candles(KEY.exchange, KEY.symbol, "1m", START, end),
            )
        if not ours.equals(raw):
            raise SystemExit(f"{label}: get_candles differs from the store's read")
        cached.get_candles(KEY.exchange, KEY.symbol, "1m", START, end)  # fills the entry
        hit_s, hit = best_of(max(repeat, 5), lambda: cached.get_candles(KEY.exchange, KEY.symbol, "1m", START, end))
        if not hit.equals(raw) or cached.metrics.snapshot().cache_hits < 1:
            raise SystemExit(f"{label}: the cached read is not a hit equal to the store's read")
        redis_s, from_redis = best_of(repeat, lambda: shared.get_candles(KEY.exchange, KEY.symbol, "1m", START, end))
        if not from_redis.equals(raw) or shared.metrics.snapshot().cache_hits < repeat:
            raise SystemExit(f"{label}: the Redis hit is not equal to the store's read")
        print(
            f"  {label}: raw read {raw_s:.3f} s, get_candles uncached {ours_s:.3f} s, cached {hit_s * 1000:.1f} ms"
            f" (out of Redis, no frames kept: {redis_s * 1000:.0f} ms)"
        )

        days = rows // 1440

        def one_day(day: int) -> object:
            at = START + timedelta(days=day)
            return uncached.get_candles(KEY.exchange, KEY.symbol, "1m", at, at + timedelta(days=1))

        single, single_latencies = concurrent_reads(one_day, days, 1, threads * reads // 4)
        many, latencies = concurrent_reads(one_day, days, threads, reads)
        p99 = float(np.percentile(np.array(latencies) * 1000, 99))
        median_one = statistics.median(single_latencies) * 1000
        print(
            f"  {label}: one-day reads, 1 thread {single:.0f}/s (median {median_one:.1f} ms);"
            f" {threads} threads {many:.0f}/s, p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99:.1f} ms"
        )

        # The API as deployed: `marketkeeper serve` in a process of its own, on a loopback port.
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "marketkeeper", "serve", "--port", str(port)],
            env=serve_env(config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        params = {"exchange": KEY.exchange, "symbol": KEY.symbol, "timeframe": "1m", "format": "csv",
                  "start": START.isoformat(), "end": end.isoformat()}  # fmt: skip
        client = httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"marketkeeper serve did not start: {server.communicate()[1]!r}") from None
                time.sleep(0.2)

        def http_csv() -> int:
            lines = 0
            with client.stream("GET", f"http://127.0.0.1:{port}/v1/candles", params=params) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    lines += chunk.count(b"\n")
            return lines

        try:
            http_s, lines = best_of(repeat, http_csv)
        finally:
            client.close()
            server.terminate()
            server.wait(timeout=30)
        if lines != rows + 1:
            raise SystemExit(f"{label}: the HTTP CSV had {lines:,} lines, expected {rows + 1:,}")
        print(f"  {label}: HTTP CSV of the year {http_s:.3f} s ({lines:,} lines)")
    finally:
        uncached.close()
        cached.close()
        shared.close()
    return [
        Target(f"{label} get_candles uncached / raw read", raw_s / ours_s, 0.5, against="CandleStore.read"),
        Target(
            f"{label} cached repeat, times faster than uncached", ours_s / hit_s, 10.0, against="uncached get_candles"
        ),
        Target(
            f"{label} a hit out of Redis alone, times faster",
            ours_s / redis_s,
            10.0,
            against="uncached get_candles; the whole entry moved out of Redis",
        ),
        Target(
            f"{label} {threads} threads' throughput / 1 thread's",
            many / single,
            1.0,
            against=f"p99 {p99:.1f} ms, {many:.0f} reads/s",
        ),
        Target(f"{label} HTTP CSV time / Python API time", http_s / ours_s, 2.0, below=True, against="get_candles"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=525_600, help="1m candles (default: one year)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--reads", type=int, default=20, help="one-day reads per thread")
    parser.add_argument("--influxdb", action="store_true", help="also measure with the candles in InfluxDB")
    args = parser.parse_args()
    print_machine("market-data API benchmark")
    prefix = f"mkbench:{uuid.uuid4().hex[:8]}:"
    targets: list[Target] = []
    try:
        with throwaway_postgresql() as url:
            migrate.upgrade(url)
            redis_of = lambda: RedisClient(REDIS_URL, prefix=prefix)  # noqa: E731
            config = StoreConfig(ledger_url=url, redis=redis_of)
            targets += run("PostgreSQL", config, args.rows, args.repeat, args.threads, args.reads)
            if args.influxdb:
                with throwaway_influxdb() as client:
                    database = client.database
                    from marketkeeper.influxdb import InfluxDBClient

                    # A year in one chunked query: a loaded machine's InfluxDB can pause longer than the 10 s default.
                    influx = StoreConfig(
                        ledger_url=url,
                        influxdb=lambda: InfluxDBClient(client.url, database=database, timeout=300),
                        redis=redis_of,
                    )
                    targets += run("InfluxDB", influx, args.rows, args.repeat, args.threads, args.reads)
    finally:
        raw = redis.Redis.from_url(REDIS_URL)
        keys = list(raw.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            raw.delete(*keys)
        raw.close()
    report(targets)


if __name__ == "__main__":
    main()
