"""A real Airflow for tests: api-server, scheduler and dag-processor on a free loopback port, run by this process.

Everything lives in a temporary directory: ``AIRFLOW_HOME``, the SQLite metadata DB (LocalExecutor accepts SQLite
in Airflow 3), the logs and the SimpleAuthManager password file, which holds a known admin password. DAGs come
from ``dags/``, plugins from ``plugins/``, the ``marketkeeper_*`` connections from the store variables given
(``scripts/airflow.sh`` derives them, as for ``make up``). The scheduler creates no scheduled runs
(``use_job_schedule`` off) and DAGs start unpaused, so only what a test triggers or backfills runs.
:func:`running_airflow` waits until the API answers and the DAGs are parsed, and stops every process group after.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.airflow_cli import ROOT, STORE_ENV

ADMIN = "admin"
#: The DAGs a test may drive; the server is ready once every one is parsed.
READY_DAGS = ("ohlcv_gaps", "ohlcv_ingest")
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AirflowServer:
    """A running Airflow: its URL, the admin's credentials and its home (logs under ``home/logs``)."""

    url: str
    username: str
    password: str
    home: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = None

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """A test's own call of the REST API (not through the client under test); fails on HTTP errors."""
        if self._token is None:
            answer = requests.post(
                f"{self.url}/auth/token", json={"username": self.username, "password": self.password}, timeout=30
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        response = requests.request(
            method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self._token}"}, timeout=30, **kw
        )
        assert response.status_code < 400, f"{method} {path} -> {response.status_code}: {response.text}"
        return response.json() if response.content else None

    def set_variable(self, key: str, value: str) -> None:
        """Create or replace an Airflow Variable."""
        with contextlib.suppress(AssertionError):
            self.api("DELETE", f"/api/v2/variables/{key}")
        self.api("POST", "/api/v2/variables", json={"key": key, "value": value})

    def log_tail(self, chars: int = 4000) -> str:
        """The end of every component's log, for assertion messages."""
        parts = []
        for name in COMPONENTS:
            path = self.home / "logs" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def task_logs(self) -> str:
        """Every task log written so far (``home/airflow/logs``)."""
        root = self.home / "airflow" / "logs"
        return "\n".join(p.read_text(errors="replace") for p in sorted(root.rglob("*.log")) if p.is_file())


def airflow_environment(home: Path, port: int, password_file: Path, store_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a test's Airflow on loopback ``port``: its own homes, auth, fast parsing, the stores."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in STORE_ENV and not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))
    }
    env.pop("AIRFLOW_HOME", None)
    url = f"http://127.0.0.1:{port}"
    env.update(
        MARKETKEEPER_AIRFLOW_HOME=str(home / "airflow"),
        MARKETKEEPER_HOME=str(home / "marketkeeper"),
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="3",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(password_file),
        # One secret for every component, so tokens the api-server signs are valid for the workers too.
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="300",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="600",
        AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "airflow" / "logs"),
        GX_ANALYTICS_ENABLED="False",
        **store_env,
    )
    return env


def _airflow_cli(env: Mapping[str, str], cwd: Path, *args: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "airflow.sh"), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-4000:]}")


def _stop(processes: Mapping[str, subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """SIGTERM every component's process group, SIGKILL what is left after ``grace`` seconds."""
    for proc in processes.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in processes.values():
        # The group may outlive its leader (task supervisors, gunicorn workers): kill it whatever the leader did.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _wait_ready(server: AirflowServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in server.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}\n{server.log_tail()}")
        try:
            dags = {d["dag_id"] for d in server.api("GET", "/api/v2/dags", params={"limit": 100})["dags"]}
            if all(dag_id in dags for dag_id in READY_DAGS):
                errors = server.api("GET", "/api/v2/importErrors")
                if errors["total_entries"]:
                    raise RuntimeError(f"DAG import errors: {json.dumps(errors)[:3000]}")
                return
        except (requests.RequestException, AssertionError):
            server._token = None
        if time.monotonic() > deadline:
            raise RuntimeError(f"Airflow at {server.url} not ready after {timeout:.0f}s\n{server.log_tail()}")
        time.sleep(1.0)


@contextlib.contextmanager
def running_airflow(store_env: Mapping[str, str], *, ready_timeout: float = 180.0) -> Iterator[AirflowServer]:
    """Start a throwaway Airflow whose tasks reach the stores ``store_env`` names (``DATABASE_URL``, ...).

    :param store_env: the store variables ``scripts/airflow.sh`` turns into ``marketkeeper_*`` connections.
    :param ready_timeout: seconds to wait for the API and the parsed DAGs.
    """
    with tempfile.TemporaryDirectory(prefix="marketkeeper-airflow-server-") as tmp:
        home = Path(tmp)
        (home / "logs").mkdir()
        password = secrets.token_urlsafe(16)
        password_file = home / "passwords.json"
        password_file.write_text(json.dumps({ADMIN: password}))
        port = free_port()
        env = airflow_environment(home, port, password_file, store_env)
        # Migrate before anything starts, so the components never race to create the metadata DB.
        _airflow_cli(env, home, "db", "migrate")
        _airflow_cli(env, home, "pools", "set", "exchange_api", "4", "exchange API calls")
        server = AirflowServer(url=f"http://127.0.0.1:{port}", username=ADMIN, password=password, home=home)
        try:
            for name in COMPONENTS:
                with (home / "logs" / f"{name}.log").open("wb") as log:
                    server.processes[name] = subprocess.Popen(
                        [str(ROOT / "scripts" / "airflow.sh"), name],
                        env=env,
                        cwd=home,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
            _wait_ready(server, ready_timeout)
            yield server
        finally:
            _stop(server.processes)
