"""Backup cost and restore time of the ledger: marketkeeper's backup (pg_dump -Fc streamed through sha256 into the
backup folder under a temporary name, the per-table figures computed on the same snapshot, the catalog rows)
against a plain ``pg_dump -Fc -f FILE`` of the same database in the same run; then the drill's restore time
(RTO: fetch + checksum + pg_restore into a scratch database + figures). The ledger holds ``--rows`` 1m
candles (default 1,000,000) plus the migrated schema. It creates and drops its own throwaway database.
Run: ``.venv/bin/python bench/backup.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _common import Target, best_of, print_machine, report, throwaway_postgresql
from candle_write import KEY, make_frame

from marketkeeper.backups.destination import Destination
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.services import backups
from marketkeeper.store_set import StoreConfig
from marketkeeper.stores import SQLCandleStore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print_machine(f"backup benchmark: a ledger with {args.rows:,} candles")
    import airflow.sdk  # noqa: F401 - a one-time import (~2 s) the backup pays once per process, not per backup

    with throwaway_postgresql() as url, tempfile.TemporaryDirectory(prefix="mk-bench-backup-") as tmp:
        migrate.upgrade(url)
        engine = create_ledger_engine(url)
        started = time.perf_counter()
        SQLCandleStore(engine).write(KEY, make_frame(args.rows))
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar_one()
        engine.dispose()
        print(f"ledger: {args.rows:,} candles written in {time.perf_counter() - started:.1f} s, database {size}")

        parsed = sa.engine.make_url(url)
        pg_dump = shutil.which("pg_dump") or "pg_dump"
        raw_file = Path(tmp, "raw.dump")

        def plain() -> None:
            raw_file.unlink(missing_ok=True)
            subprocess.run(
                [pg_dump, "--format=custom", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432),
                 "-U", parsed.username or "postgres", "-f", str(raw_file), parsed.database or ""],
                check=True,
            )  # fmt: skip

        config = StoreConfig(ledger_url=url)
        destination = Destination(Path(tmp, "backups").as_uri())

        def ours() -> backups.BackupOutcome:
            return backups.run_backup(config, "ledger", destination=destination)

        # Interleaved, best of N each, so both see the same load.
        raw_times, our_times = [], []
        outcome = None
        for _ in range(max(1, args.repeat)):
            raw_times.append(best_of(1, plain)[0])
            seconds, outcome = best_of(1, ours)
            our_times.append(seconds)
        raw, mine = min(raw_times), min(our_times)
        assert outcome is not None
        print(f"plain pg_dump -Fc -f FILE: {raw:.2f} s, {raw_file.stat().st_size:,} bytes (runs: {raw_times})")
        print(f"marketkeeper backup run:   {mine:.2f} s, {outcome.size:,} bytes (runs: {our_times})")

        started = time.perf_counter()
        drill = backups.drill_store(config, "ledger", destination=destination)
        drill_wall = time.perf_counter() - started
        print(
            f"drill: RTO {drill.rto_seconds:.2f} s (fetch + sha256 + pg_restore + figures), {drill_wall:.2f} s in all"
        )

    ok = report(
        [
            Target("backup + checksum / plain pg_dump -Fc", mine / raw, 1.2, below=True, against="pg_dump -Fc -f FILE"),
        ]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
