"""How long each DAG file takes to import, against importing ``airflow.sdk`` alone, in fresh interpreters.

    .venv/bin/python bench/dag_import.py [-n 3] [dags/some_dag.py ...]

Airflow's DAG processor re-imports every file on every parse; a DAG file should cost little beyond the SDK
itself (heavy imports belong inside tasks). Prints the median per file, its ratio to the baseline and whether
its own cost (the median minus the baseline: the processor has Airflow loaded already) stays under 1 s.
Informational only: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_machine

ROOT = Path(__file__).resolve().parents[1]

# Times only the import itself, not the interpreter's start-up.
_CHILD = """
import importlib.util, json, sys, time
sys.dont_write_bytecode = True
started = time.perf_counter()
if sys.argv[1] == "-":
    import airflow.sdk
else:
    spec = importlib.util.spec_from_file_location("dag_under_bench", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
print(json.dumps(time.perf_counter() - started))
"""


def time_import(target: str, runs: int, env: dict[str, str]) -> list[float]:
    """Seconds to import ``target`` (a DAG file, or ``-`` for ``airflow.sdk``), once per new interpreter."""
    seconds = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, target], env=env, capture_output=True, text=True, check=True
        )
        seconds.append(float(result.stdout.strip().splitlines()[-1]))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="DAG files (default: every dags/*.py)")
    parser.add_argument("-n", "--runs", type=int, default=3, help="fresh interpreters per file (default 3)")
    args = parser.parse_args()
    print_machine("DAG import benchmark: each DAG file against importing airflow.sdk alone")
    files = args.files or sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))

    with tempfile.TemporaryDirectory(prefix="marketkeeper-bench-airflow-") as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        time_import("-", 1, env)  # warm the OS file cache so the first measured run is not an outlier
        baseline = statistics.median(time_import("-", args.runs, env))
        print(f"baseline: import airflow.sdk  {baseline * 1000:8.1f} ms  (median of {args.runs})")
        print(f"{'file':<32} {'median ms':>10} {'x baseline':>10} {'own ms':>8}  own under 1 s")
        report = []
        for path in files:
            median = statistics.median(time_import(str(path), args.runs, env))
            under = median - baseline < 1.0
            print(
                f"{path.name:<32} {median * 1000:10.1f} {median / baseline:10.2f} "
                f"{(median - baseline) * 1000:8.1f}  {'yes' if under else 'NO'}"
            )
            report.append({"file": path.name, "seconds": median, "ratio": median / baseline, "under_1s": under})
    if os.environ.get("BENCH_JSON"):
        print(json.dumps({"baseline_seconds": baseline, "files": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
