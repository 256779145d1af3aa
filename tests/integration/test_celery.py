"""``ohlcv_ingest`` under CeleryExecutor, started by ``scripts/airflow-celery.sh`` (what ``make up-celery`` runs):
50 synthetic markets over two workers, one worker SIGKILLed mid-run. After Airflow's retries the ledger holds
every candle exactly once, no quality evidence twice for a window, and no advisory lock.

Everything is throwaway: the Airflow home, a metadata DB and a ledger DB of this test's own on the real
PostgreSQL, the broker in Redis DB 14 on a queue named for this process (the cache's DB is never touched: no
REDIS_URL).
Timeouts are shortened so that the dead worker's tasks are noticed (heartbeat timeout) and retried (retry
delay capped by ``[core] max_task_retry_delay``) within a minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from marketkeeper.ledger import migrate
from tests.airflow_cli import ROOT
from tests.airflow_server import ADMIN, AirflowServer, airflow_environment, free_port
from tests.conftest import PG_ADMIN_URL, PG_TEST_DB

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

MARKET_COUNT = 50
START = datetime(2024, 5, 6, 10, tzinfo=UTC)
END = START + timedelta(hours=1)
CANDLES_PER_MARKET = 60  # 1m candles in one hour
EXCHANGE = "celerytest"
BROKER_URL = "redis://127.0.0.1:6379/14"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2")
#: Markets per mapped ``ingest`` task (the DAG's ``batch_size`` param): 10 tasks over the pool's 4 slots.
BATCH_SIZE = 5
BATCHES = MARKET_COUNT // BATCH_SIZE
#: Kill worker-1 once this many batches are done and it is running one.
KILL_AFTER_DONE = 2
RUN_TIMEOUT = 900.0


def markets() -> dict[str, Any]:
    return {
        "markets": [
            {
                "exchange": EXCHANGE,
                "symbol": f"C{i:02d}/USDT",
                "source": f"synthetic:{i}",
                "first_date": START.date().isoformat(),
            }
            for i in range(MARKET_COUNT)
        ]
    }


@dataclass
class CeleryStack:
    """The running ``scripts/airflow-celery.sh``: the API, the component logs and pid files, the ledger."""

    server: AirflowServer
    process: subprocess.Popen[bytes]
    logs: Path
    ledger_url: str

    def pid(self, component: str) -> int:
        return int((self.logs / f"{component}.pid").read_text())

    def log_tail(self, chars: int = 3000) -> str:
        parts = [f"--- script ---\n{(self.logs / 'script.log').read_text(errors='replace')[-chars:]}"]
        for name in COMPONENTS:
            path = self.logs / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def _create_db(name: str) -> str:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
    admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_db(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {admin.dialect.identifier_preparer.quote(name)} WITH (FORCE)"))
    admin.dispose()


def _free_port_pair() -> int:
    """A base port whose base+1 and base+2 are free (worker N serves its logs on base+N)."""
    for _ in range(50):
        base = free_port()
        if base < 65000 and all(_port_free(base + n) for n in (1, 2)):
            return base
    raise RuntimeError("no free pair of ports for the workers' log servers")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _environment(home: Path, port: int, metadata_url: str, ledger_url: str, password_file: Path) -> dict[str, str]:
    """The test Airflow's environment (:func:`tests.airflow_server.airflow_environment`) under CeleryExecutor."""
    env = airflow_environment(home, port, password_file, {"DATABASE_URL": ledger_url})
    # The script chooses the executor and parallelism for CeleryExecutor; its own names are MARKETKEEPER_*.
    for name in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__PARALLELISM"):
        env.pop(name, None)
    for name in [
        k for k in env if k.startswith("MARKETKEEPER_") and k not in ("MARKETKEEPER_AIRFLOW_HOME", "MARKETKEEPER_HOME")
    ]:
        env.pop(name)
    env.update(
        MARKETKEEPER_WORKER_LOG_PORT_BASE=str(_free_port_pair()),
        MARKETKEEPER_STOP_GRACE="10",
        AIRFLOW_VAR_MARKETKEEPER_MARKETS=json.dumps(markets()),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=make_url(metadata_url)
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False),
        AIRFLOW__CELERY__BROKER_URL=BROKER_URL,
        # A queue of this run's own: another stack on the same broker DB (a parallel run) never takes its tasks.
        AIRFLOW__OPERATORS__DEFAULT_QUEUE=f"marketkeeper-test-{os.getpid()}",
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        # A SIGKILLed worker's running tasks stop heartbeating: noticed after 30 s, retried after <= 5 s
        # (the DAG's 2-minute exponential retry delay is capped by max_task_retry_delay).
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="30",
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="5",
        AIRFLOW__CORE__MAX_TASK_RETRY_DELAY="5",
        # A message the dead worker had taken but not started stays "queued": requeued after this.
        AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="180",
    )
    return env


def _stop(process: subprocess.Popen[bytes], logs: Path) -> None:
    """SIGTERM the script (it stops its components); SIGKILL whatever survived, by the pid files it keeps."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    for pid_file in logs.glob("*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _wait_ready(stack: CeleryStack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if stack.process.poll() is not None:
            raise RuntimeError(f"airflow-celery.sh exited with {stack.process.returncode}\n{stack.log_tail()}")
        try:
            dags = {d["dag_id"] for d in stack.server.api("GET", "/api/v2/dags", params={"limit": 100})["dags"]}
            workers_up = all(f"worker-{n}@" in (stack.logs / f"worker-{n}.log").read_text() for n in (1, 2))
            if "ohlcv_ingest" in dags and workers_up:
                errors = stack.server.api("GET", "/api/v2/importErrors")
                assert not errors["total_entries"], json.dumps(errors)[:3000]
                return
        except (requests.RequestException, AssertionError, FileNotFoundError):
            stack.server._token = None
        if time.monotonic() > deadline:
            raise RuntimeError(f"CeleryExecutor stack not ready after {timeout:.0f}s\n{stack.log_tail()}")
        time.sleep(2.0)


@pytest.fixture
def celery_stack() -> Iterator[CeleryStack]:
    broker = redis.Redis.from_url(BROKER_URL)
    metadata_db, ledger_db = f"{PG_TEST_DB}_celery_airflow", f"{PG_TEST_DB}_celery_ledger"
    metadata_url, ledger_url = _create_db(metadata_db), _create_db(ledger_db)
    migrate.upgrade(ledger_url)
    with tempfile.TemporaryDirectory(prefix="marketkeeper-celery-") as tmp:
        home = Path(tmp)
        logs = home / "airflow" / "celery"
        logs.mkdir(parents=True)
        password = secrets.token_urlsafe(16)
        password_file = home / "passwords.json"
        password_file.write_text(json.dumps({ADMIN: password}))
        port = free_port()
        env = _environment(home, port, metadata_url, ledger_url, password_file)
        with (logs / "script.log").open("wb") as out:
            process = subprocess.Popen(
                [str(ROOT / "scripts" / "airflow-celery.sh")],
                env=env,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = AirflowServer(url=f"http://127.0.0.1:{port}", username=ADMIN, password=password, home=home)
        stack = CeleryStack(server=server, process=process, logs=logs, ledger_url=ledger_url)
        try:
            _wait_ready(stack, timeout=300)
            yield stack
        finally:
            _stop(process, logs)
            queue = f"marketkeeper-test-{os.getpid()}"
            broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            broker.close()
            _drop_db(metadata_db)
            _drop_db(ledger_db)


def task_instances(stack: CeleryStack, run_id: str) -> list[dict[str, Any]]:
    found = stack.server.api(
        "GET",
        f"/api/v2/dags/ohlcv_ingest/dagRuns/{run_id}/taskInstances",
        params={"limit": 1000, "task_id": "ingest"},
    )
    return list(found["task_instances"])


def advisory_locks(ledger_url: str) -> list[tuple[Any, ...]]:
    """Advisory locks held on the ledger's database by any session."""
    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT l.classid, l.objid, l.pid, l.granted FROM pg_locks l "
                    "JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
                )
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` is ``ancestor`` or one of its descendants (Linux ``/proc``)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
    return False


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(celery_stack: CeleryStack) -> None:
    stack = celery_stack
    started = time.monotonic()
    run = stack.server.api(
        "POST",
        "/api/v2/dags/ohlcv_ingest/dagRuns",
        json={
            "logical_date": None,
            "conf": {"start": START.isoformat(), "end": END.isoformat(), "batch_size": BATCH_SIZE},
        },
    )
    run_id = run["dag_run_id"]

    # Mid-run: some batches done and worker-1 running at least one. (Not "all four slots busy": a batch now
    # takes a few seconds, and the waves of the pool's 4 slots overlap too little for a poll to catch.)
    deadline = time.monotonic() + RUN_TIMEOUT

    worker_1 = stack.pid("worker-1")

    def on_worker_1(instances: list[dict[str, Any]]) -> set[int]:
        # Both workers run on this host: a task is worker-1's when its process descends from worker-1's.
        return {
            ti["map_index"]
            for ti in instances
            if ti["state"] == "running" and ti.get("pid") and _descends_from(int(ti["pid"]), worker_1)
        }

    while True:
        instances = task_instances(stack, run_id)
        states = [ti["state"] for ti in instances]
        if states.count("success") >= KILL_AFTER_DONE and on_worker_1(instances):
            break
        assert states.count("success") < BATCHES, f"the run ended before worker-1 could be killed mid-task: {states}"
        assert time.monotonic() < deadline, f"never reached mid-run: {states}\n{stack.log_tail()}"
        time.sleep(0.2)
    running_at_kill = on_worker_1(instances)
    killed_after = time.monotonic() - started
    os.killpg(stack.pid("worker-1"), signal.SIGKILL)

    while True:
        state = stack.server.api("GET", f"/api/v2/dags/ohlcv_ingest/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"run still {state} after {RUN_TIMEOUT:.0f}s\n{stack.log_tail()}"
        time.sleep(2.0)
    duration = time.monotonic() - started
    instances = task_instances(stack, run_id)
    retried = sorted(ti["map_index"] for ti in instances if ti["try_number"] > 1)
    print(
        f"\n{MARKET_COUNT} markets in {BATCHES} batches: worker-1 killed after {killed_after:.0f}s with "
        f"{sorted(running_at_kill)} running, run {state} after {duration:.0f}s, retried map indexes {retried}"
    )
    assert state == "success", f"{[(ti['map_index'], ti['state']) for ti in instances]}\n{stack.log_tail()}"
    assert len(instances) == BATCHES
    assert all(ti["state"] == "success" for ti in instances)
    # The kill hit running work (worker-1's running tasks at the kill): Airflow retried it elsewhere.
    assert set(retried) & running_at_kill, f"no task running at the kill ({running_at_kill}) was retried: {retried}"

    engine = sa.create_engine(stack.ledger_url)
    try:
        with engine.connect() as conn:
            counts = dict(
                conn.execute(
                    sa.text(
                        "SELECT symbol, count(*) FROM candles WHERE exchange = :e AND timeframe = '1m' "
                        "AND open_time >= :s AND open_time < :t GROUP BY symbol"
                    ),
                    {"e": EXCHANGE, "s": START, "t": END},
                ).all()
            )
            outside = conn.scalar(
                sa.text("SELECT count(*) FROM candles WHERE exchange = :e AND (open_time < :s OR open_time >= :t)"),
                {"e": EXCHANGE, "s": START, "t": END},
            )
            # Every validation keeps its data_quality_runs row (the history, see quality/store.py): a window has
            # one row per try that validated it, and the latest says success.
            quality = conn.execute(
                sa.text(
                    "SELECT symbol, count(*), bool_and(success) FROM data_quality_runs "
                    "WHERE exchange = :e AND range_start = :s AND range_end = :t GROUP BY symbol"
                ),
                {"e": EXCHANGE, "s": START, "t": END},
            ).all()
            quality_other_windows = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM data_quality_runs "
                    "WHERE exchange = :e AND NOT (range_start = :s AND range_end = :t)"
                ),
                {"e": EXCHANGE, "s": START, "t": END},
            )
            quarantined_twice = conn.execute(
                sa.text(
                    "SELECT symbol, open_time, failed_expectation, count(*) FROM quarantined_candles "
                    "WHERE exchange = :e GROUP BY symbol, open_time, failed_expectation HAVING count(*) > 1"
                ),
                {"e": EXCHANGE},
            ).all()
    finally:
        engine.dispose()
    assert counts == {f"C{i:02d}/USDT": CANDLES_PER_MARKET for i in range(MARKET_COUNT)}
    assert outside == 0
    assert len(quality) == MARKET_COUNT
    assert quality_other_windows == 0
    tries = max(ti["try_number"] for ti in instances)
    revalidated = {symbol: n for symbol, n, _ in quality if n > 1}
    print(f"candles per market {set(counts.values())}, markets validated again after the kill: {revalidated}")
    assert all(ok for _, _, ok in quality)
    assert all(n <= tries for n in revalidated.values()), revalidated
    # Only markets of retried batches, and only those not recorded complete before the kill, are validated again.
    assert len(revalidated) <= BATCH_SIZE * len(retried), revalidated
    assert quarantined_twice == []
    # The killed worker's sessions died with it, the others unlocked: nothing is held while the stack still runs.
    assert advisory_locks(stack.ledger_url) == []
