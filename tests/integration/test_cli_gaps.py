"""``marketkeeper gaps`` and ``marketkeeper backfill`` run as a user runs them, against real ledgers.

``--via airflow`` is tested against a loopback HTTP server of the test's own that checks the requests (a real
``airflow api-server`` is too heavy to start here); the request and answer shapes are Airflow 3.3's
``POST /auth/token`` and ``POST /api/v2/backfills``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

SERIES = ["--exchange", "clitest", "--symbol", "BTC/USDT", "--timeframe", "1m"]


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {"MARKETKEEPER_HOME": str(tmp_path / "home")}
    return {"DATABASE_URL": request.getfixturevalue("fresh_pg_url"), "MARKETKEEPER_HOME": str(tmp_path / "home")}


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = run_cli(*args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_detect_list_backfill_and_list_again(env: dict[str, str], tmp_path: Path) -> None:
    cli(env, tmp_path, "db", "upgrade")
    for start, end in (("2024-05-06T00:00Z", "2024-05-06T01:00Z"), ("2024-05-06T02:00Z", "2024-05-06T03:00Z")):
        cli(env, tmp_path, "ingest", *SERIES, "--start", start, "--end", end, "--source", "synthetic:3")
    window = ["--start", "2024-05-06T00:00Z", "--end", "2024-05-06T03:00Z"]

    detected = json.loads(cli(env, tmp_path, "gaps", "detect", *SERIES, *window, "--format", "json"))
    assert detected[0]["gaps"] == 1 and detected[0]["missing"] == 60
    assert detected[0]["holes"] == [
        {"start": "2024-05-06T01:00:00+00:00", "end": "2024-05-06T02:00:00+00:00", "missing": 60}
    ]

    listed = json.loads(cli(env, tmp_path, "gaps", "--exchange", "clitest", "--format", "json"))
    assert [(g["start"], g["missing"], g["status"]) for g in listed] == [("2024-05-06T01:00:00+00:00", 60, "open")]
    assert "60 missing" in cli(env, tmp_path, "gaps", "--status", "open")

    summary = cli(env, tmp_path, "backfill", *SERIES, *window, "--source", "synthetic:3")
    assert "1 gap(s) attempted: 1 filled" in summary and "60 written" in summary
    assert "0 candle(s) still missing" in summary

    filled = json.loads(cli(env, tmp_path, "gaps", "--status", "filled", "--format", "json"))
    assert len(filled) == 1 and filled[0]["resolved_at"] is not None
    assert json.loads(cli(env, tmp_path, "gaps", "--status", "open", "--format", "json")) == []

    forced = cli(env, tmp_path, "backfill", *SERIES, *window, "--source", "synthetic:3", "--force")
    assert "forced" in forced and "180 written" in forced


def test_bad_options_are_named(tmp_path: Path) -> None:
    env = {"MARKETKEEPER_HOME": str(tmp_path / "home")}
    bad = run_cli("gaps", "--status", "closed", env=env, cwd=tmp_path)
    assert bad.returncode == 1 and "--status 'closed'" in bad.stderr
    backwards = run_cli("backfill", *SERIES, "--start", "2024-02-01", "--end", "2024-01-01", env=env, cwd=tmp_path)
    assert backwards.returncode == 1 and "must be before --end" in backwards.stderr


class FakeAirflow(BaseHTTPRequestHandler):
    """Answers like Airflow 3.3's API server, recording every request; refuses a backfill without the token."""

    requests: list[tuple[str, str, dict[str, str], Any]] = []  # noqa: RUF012 - one server per test

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
        self.requests.append(("POST", self.path, dict(self.headers), body))
        if self.path == "/auth/token":
            if body != {"username": "ops", "password": "s3cret"}:
                return self._answer(401, {"detail": "Invalid credentials"})
            return self._answer(201, {"access_token": "jwt-123"})
        if self.path == "/api/v2/backfills":
            if self.headers.get("Authorization") != "Bearer jwt-123":
                return self._answer(401, {"detail": "Not authenticated"})
            if body["dag_id"] != "ohlcv_ingest":
                return self._answer(404, {"detail": f"Dag {body['dag_id']} not found"})
            answer = {**body, "id": 42, "is_paused": False, "created_at": "2026-01-01T00:00:00Z"}
            return self._answer(200, answer)
        return self._answer(404, {"detail": "Not Found"})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def airflow_url() -> Iterator[str]:
    FakeAirflow.requests = []
    server = HTTPServer(("127.0.0.1", 0), FakeAirflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_backfill_via_airflow_creates_an_ohlcv_ingest_backfill(airflow_url: str, tmp_path: Path) -> None:
    args = ["backfill", *SERIES, "--start", "2024-05-01", "--end", "2024-05-02", "--via", "airflow"]
    env = {"AIRFLOW_API_URL": airflow_url, "AIRFLOW_API_USER": "ops", "AIRFLOW_API_PASSWORD": "s3cret"}
    out = cli(env, tmp_path, *args)
    assert "backfill 42 of ohlcv_ingest" in out and f"{airflow_url}/api/v2/backfills/42" in out
    (_, token_path, _, token_body), (_, path, headers, body) = FakeAirflow.requests
    assert token_path == "/auth/token" and token_body == {"username": "ops", "password": "s3cret"}
    assert path == "/api/v2/backfills" and headers["Authorization"] == "Bearer jwt-123"
    assert body == {
        "dag_id": "ohlcv_ingest",
        "from_date": "2024-05-01T00:00:00+00:00",
        "to_date": "2024-05-02T00:00:00+00:00",
        "run_backwards": False,
        "dag_run_conf": {"markets": ["clitest:BTC/USDT:1m"]},
        "reprocess_behavior": "failed",
        "max_active_runs": 4,
    }
    assert "s3cret" not in out

    FakeAirflow.requests = []
    forced = cli(env, tmp_path, *args, "--force")
    assert "reprocess: completed" in forced

    refused = run_cli(*args, env={**env, "AIRFLOW_API_PASSWORD": "wrong"}, cwd=tmp_path)
    assert refused.returncode == 1 and "HTTP 401: Invalid credentials" in refused.stderr
