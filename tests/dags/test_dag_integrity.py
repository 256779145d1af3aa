"""Every DAG file imports cleanly, follows the project's conventions and does no I/O when it is parsed.

The parse-time check runs each DAG file in a fresh interpreter under a ``sys.addaudithook`` guard: once
Airflow itself is imported, the hook records every network call (``socket.*``), subprocess, SQLite connection
and file opened for writing or outside the code folders (dags/, include/, the interpreter's libraries). Audit
events are raised by CPython itself, so this catches I/O hidden behind any library call (a hook,
``Variable.get``, ``requests.get``), which an AST check of the DAG file's own statements cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

# Airflow writes under AIRFLOW_HOME as soon as it is imported: use a throwaway directory, never ~/airflow.
os.environ.setdefault("MARKETKEEPER_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="marketkeeper-airflow-"))
os.environ["AIRFLOW_HOME"] = os.environ["MARKETKEEPER_TEST_AIRFLOW_HOME"]

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=DAGS_FOLDER)


def test_there_are_dag_files() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_FOLDER}"


def test_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}


def test_every_dag_follows_the_conventions(dagbag: Any) -> None:
    assert dagbag.dags, "the DagBag is empty"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.owner == "marketkeeper", f"{dag_id}.{task.task_id} is owned by {task.owner!r}"
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries only {task.retries} times"


def test_stores_check_shape(dagbag: Any) -> None:
    dag = dagbag.dags["stores_check"]
    assert set(dag.task_ids) == {"check_ledger", "check_influxdb", "check_redis", "summary"}
    summary = dag.get_task("summary")
    assert summary.upstream_task_ids == {"check_ledger", "check_influxdb", "check_redis"}
    # Runs after skipped (not configured) checks, never after a failed one: the run must fail with the store.
    assert summary.trigger_rule == "none_failed"


@pytest.mark.parametrize(
    ("dag_id", "worker", "params"),
    [
        ("ohlcv_ingest", "ingest", {"markets", "start", "end", "max_failed_fraction", "batch_size"}),
        (
            "ohlcv_gaps",
            "repair",
            {"markets", "start", "end", "window_days", "retry_source_empty", "max_failed_fraction", "batch_size"},
        ),
    ],
)
def test_candle_dags_plan_then_work_per_batch_then_summarise(
    dagbag: Any, dag_id: str, worker: str, params: set[str]
) -> None:
    """plan -> one mapped task per batch of markets (on the exchange pool, emitting through the candles alias)
    -> summary."""
    dag = dagbag.dags[dag_id]
    assert set(dag.task_ids) == {"plan", worker, "summary"}
    mapped = dag.get_task(worker)
    assert mapped.upstream_task_ids == {"plan"}
    assert dag.get_task("summary").upstream_task_ids == {worker}
    assert type(mapped).__name__ == "DecoratedMappedOperator"
    assert mapped.pool == "exchange_api"
    assert [(type(o).__name__, o.name) for o in mapped.outlets] == [("AssetAlias", "marketkeeper_candles")]
    assert set(dag.params) == params


def test_ohlcv_ingest_runs_hourly_over_data_intervals(dagbag: Any) -> None:
    """Its runs ingest what closed in their data interval, so the timetable must give them one."""
    timetable = dagbag.dags["ohlcv_ingest"].timetable
    assert type(timetable).__name__ == "CronDataIntervalTimetable"
    assert timetable.expression == "0 * * * *"


_GUARD = textwrap.dedent(
    """
    import importlib.util, json, os, sys

    sys.dont_write_bytecode = True  # a .pyc written next to the DAG would count as a write
    # Airflow's own start-up is not the DAG's doing: config and logging, and modules every DAG processor has
    # loaded anyway (croniter runs `file` on the interpreter when imported).
    import airflow.sdk
    from airflow.sdk import dag, task
    import airflow.sdk.definitions.timetables._cron
    import airflow.providers.standard.decorators.python

    allowed = tuple(
        os.path.realpath(p) + os.sep
        for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.argv[2:]}
    )
    forbidden_events = {
        "socket.connect", "socket.getaddrinfo", "socket.bind", "socket.sendto", "subprocess.Popen",
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "sqlite3.connect",
        "http.client.connect", "urllib.Request", "ftplib.connect", "smtplib.connect",
    }
    violations = []
    armed = False

    def guard(event, args):
        if not armed:
            return
        if event in forbidden_events:
            violations.append(f"{event} {args!r:.200}")
        elif event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
            writes = any(c in (mode or "") for c in "wax+") or (flags or 0) & write_flags
            real = os.path.realpath(os.fsdecode(path))
            if writes or not (real + os.sep).startswith(allowed):
                violations.append(f"open {real} mode={mode!r}")

    sys.addaudithook(guard)
    spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    armed = True
    try:
        spec.loader.exec_module(module)
    finally:
        armed = False
    print(json.dumps(violations))
    """
)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_does_no_io_at_parse_time(dag_file: Path) -> None:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run(
        [sys.executable, "-c", _GUARD, str(dag_file), str(DAGS_FOLDER), str(ROOT / "include")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    violations = json.loads(result.stdout.strip().splitlines()[-1])
    assert violations == [], f"{dag_file.name} does I/O at parse time: {violations}"


def test_the_guard_catches_parse_time_io(tmp_path: Path) -> None:
    """The guard is not vacuous: a DAG file reading a file and opening a socket at parse time is caught."""
    bad = tmp_path / "bad_dag.py"
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    bad.write_text(
        f"import socket\nopen({str(outside)!r}).read()\n"
        "s = socket.socket()\ntry:\n    s.connect(('127.0.0.1', 9))\nexcept OSError:\n    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", _GUARD, str(bad), str(tmp_path / "dags"), str(ROOT / "include")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    violations = json.loads(result.stdout.strip().splitlines()[-1])
    assert any(v.startswith(f"open {outside}") for v in violations), violations
    assert any(v.startswith("socket.connect") for v in violations), violations
