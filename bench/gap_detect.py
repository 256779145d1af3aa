"""Gap detection on a 10,000,000-candle 1m series with 1% of candles removed at random, against pandas.

    .venv/bin/python bench/gap_detect.py [-n 10000000] [--drop 0.01] [--repeat 3]

The baseline is the obvious pandas way: reindex the series to a full ``date_range`` and take the nulls
(it yields missing timestamps, not runs, so it does less than ``find_gaps``). Both run in this process on the
same data; the best of ``--repeat`` runs counts. Targets: ``find_gaps`` under 1 s and at least 5 times faster.
Exits 1 when a target is missed or the two disagree on what is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from _common import print_machine

from marketkeeper.gaps import find_gap_arrays, find_gaps

START = datetime(2005, 1, 1, tzinfo=UTC)


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000_000, help="candles in the full series")
    parser.add_argument("--drop", type=float, default=0.01, help="share of candles removed at random")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_machine("gap detection benchmark: find_gaps against pandas reindex + isna")

    end = START + timedelta(minutes=args.n)
    full = pd.date_range(START, end, freq="1min", inclusive="left", unit="ns")
    rng = np.random.default_rng(42)
    keep = rng.random(args.n) >= args.drop
    present = full.asi8[keep]
    expected_missing = int((~keep).sum())
    series = pd.Series(np.ones(len(present)), index=full[keep])

    def baseline() -> pd.DatetimeIndex:
        reindexed = series.reindex(pd.date_range(START, end, freq="1min", inclusive="left"))
        return reindexed.index[reindexed.isna().to_numpy()]

    t_base, missing_times = best_of(args.repeat, baseline)
    t_arrays, arrays = best_of(args.repeat, lambda: find_gap_arrays(present, "1m", START, end))
    t_list, gaps = best_of(args.repeat, lambda: find_gaps(present, "1m", START, end))
    assert isinstance(missing_times, pd.DatetimeIndex) and isinstance(gaps, list)
    found = sum(g.missing for g in gaps)

    print(f"series: {args.n:,} 1m candles, {expected_missing:,} removed at random, {len(gaps):,} gaps")
    print(f"pandas reindex + isna (baseline): {t_base * 1000:9.1f} ms   {len(missing_times):,} missing")
    print(f"find_gap_arrays (numpy arrays):   {t_arrays * 1000:9.1f} ms   x{t_base / t_arrays:.1f} vs baseline")
    print(f"find_gaps (list of Gap):          {t_list * 1000:9.1f} ms   x{t_base / t_list:.1f} vs baseline")
    ok = True
    if not (found == len(missing_times) == expected_missing == arrays.total_missing):  # type: ignore[attr-defined]
        print(f"MISMATCH: find_gaps {found}, baseline {len(missing_times)}, removed {expected_missing}")
        ok = False
    for name, seconds in (("find_gaps", t_list),):
        if seconds >= 1.0:
            print(f"MISSED: {name} took {seconds:.2f} s (target < 1 s)")
            ok = False
        if t_base / seconds < 5:
            print(f"MISSED: {name} is only x{t_base / seconds:.1f} the baseline (target >= 5x)")
            ok = False
    print("targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
