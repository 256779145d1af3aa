"""How :class:`~marketkeeper.airflow_api.AirflowClient` builds its requests and words its errors.

A loopback stand-in records the requests and answers canned bodies shaped like Airflow 3.3's; what the client
does against a real Airflow is tested in ``tests/integration/test_airflow_remote.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from marketkeeper.airflow_api import AirflowAPIError, AirflowClient, AirflowWaitTimeoutError
from marketkeeper.airflow_api.errors import AirflowAuthError, AirflowConflictError, AirflowUnavailableError

PASSWORD = "s3cret-pw"


class StandIn(BaseHTTPRequestHandler):
    """Records ``(method, path, headers, body)``; answers from ``routes`` (``(method, path)`` -> list of answers)."""

    seen: ClassVar[list[tuple[str, str, dict[str, str], Any]]] = []
    routes: ClassVar[dict[tuple[str, str], list[tuple[int, Any]]]] = {}

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, dict(self.headers), body))
        path = self.path.split("?")[0]
        answers = self.routes.get((self.command, path)) or [(404, {"detail": "Not Found"})]
        status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def standin() -> Iterator[str]:
    StandIn.seen = []
    StandIn.routes = {("POST", "/auth/token"): [(201, {"access_token": "jwt-1"})]}
    server = HTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _run(run_id: str = "manual__1", state: str = "queued") -> dict[str, Any]:
    return {"dag_id": "ohlcv_gaps", "dag_run_id": run_id, "state": state, "run_type": "manual", "conf": {"a": 1}}


def test_a_trigger_sends_the_conf_without_a_logical_date(standin: str) -> None:
    StandIn.routes[("POST", "/api/v2/dags/ohlcv_gaps/dagRuns")] = [(200, _run())]
    with AirflowClient(standin, username="ops", password=PASSWORD) as client:
        run = client.trigger_dag_run("ohlcv_gaps", conf={"markets": ["x:A/B:1m"]}, note="why")
    assert run.run_id == "manual__1" and run.state == "queued" and not run.finished
    (_, token_path, _, token_body), (method, path, headers, body) = StandIn.seen
    assert token_path == "/auth/token" and token_body == {"username": "ops", "password": PASSWORD}
    assert (method, path) == ("POST", "/api/v2/dags/ohlcv_gaps/dagRuns")
    assert headers["Authorization"] == "Bearer jwt-1"
    assert body == {"logical_date": None, "conf": {"markets": ["x:A/B:1m"]}, "note": "why"}


def test_a_backfill_body_and_its_runs_query(standin: str) -> None:
    backfill = {
        "id": 7,
        "dag_id": "ohlcv_ingest",
        "from_date": "2026-11-20T04:00:00Z",
        "to_date": "2026-11-20T05:00:00Z",
        "reprocess_behavior": "completed",
        "is_paused": False,
        "completed_at": None,
        "dag_run_conf": {"markets": ["x:A/B:1m"]},
    }
    StandIn.routes[("POST", "/api/v2/backfills")] = [(200, backfill)]
    StandIn.routes[("GET", "/api/v2/dags/ohlcv_ingest/dagRuns")] = [(200, {"dag_runs": [], "total_entries": 0})]
    start, end = datetime(2026, 11, 20, 4, tzinfo=UTC), datetime(2026, 11, 20, 5, tzinfo=UTC)
    with AirflowClient(standin, username="ops", password=PASSWORD) as client:
        created = client.create_backfill(
            "ohlcv_ingest", start, end, conf={"markets": ["x:A/B:1m"]}, reprocess_behavior="completed"
        )
        assert created.id == 7 and not created.completed
        assert client.backfill_runs(created) == []
    body = StandIn.seen[1][3]
    assert body == {
        "dag_id": "ohlcv_ingest",
        "from_date": "2026-11-20T04:00:00+00:00",
        "to_date": "2026-11-20T05:00:00+00:00",
        "run_backwards": False,
        "dag_run_conf": {"markets": ["x:A/B:1m"]},
        "reprocess_behavior": "completed",
        "max_active_runs": 4,
    }
    query = StandIn.seen[2][1]
    assert "run_type=backfill" in query and "logical_date_gte=2026-11-20T04%3A00%3A00Z" in query


def test_an_expired_token_is_fetched_again_once(standin: str) -> None:
    StandIn.routes[("GET", "/api/v2/dags/ohlcv_gaps")] = [
        (401, {"detail": "Token expired"}),
        (200, {"dag_id": "ohlcv_gaps", "is_paused": True, "has_import_errors": False}),
    ]
    with AirflowClient(standin, username="ops", password=PASSWORD) as client:
        assert client.get_dag("ohlcv_gaps").is_paused
    assert [path for _, path, _, _ in StandIn.seen].count("/auth/token") == 2


def test_errors_are_one_line_name_the_reason_and_never_the_password(standin: str) -> None:
    StandIn.routes[("POST", "/auth/token")] = [(401, {"detail": "Invalid credentials"})]
    with AirflowClient(standin, username="ops", password=PASSWORD) as client, pytest.raises(AirflowAuthError) as bad:
        client.token()
    assert str(bad.value) == f"POST {standin}/auth/token -> HTTP 401: Invalid credentials"

    StandIn.routes[("POST", "/auth/token")] = [(201, {"access_token": "jwt-1"})]
    # A validation error list: each "loc: msg", never the rejected input (which could be anything).
    invalid = [{"loc": ["body", "conf"], "msg": f"bad\nvalue {PASSWORD}", "input": {"secret": PASSWORD}}]
    StandIn.routes[("POST", "/api/v2/dags/ohlcv_gaps/dagRuns")] = [(422, {"detail": invalid})]
    StandIn.routes[("POST", "/api/v2/backfills")] = [(409, {"detail": "There is already a running backfill"})]
    with AirflowClient(standin, username="ops", password=PASSWORD) as client:
        with pytest.raises(AirflowAPIError) as refused:
            client.trigger_dag_run("ohlcv_gaps", conf={})
        with pytest.raises(AirflowConflictError, match="already a running backfill"):
            t = datetime(2026, 1, 1, tzinfo=UTC)
            client.create_backfill("ohlcv_ingest", t, t.replace(day=2))
    message = str(refused.value)
    assert message.endswith("HTTP 422: conf: bad value ***") and PASSWORD not in message


def test_an_unreachable_server_and_credentials_in_the_url_stay_out_of_messages() -> None:
    client = AirflowClient(f"http://ops:{PASSWORD}@127.0.0.1:9", username="ops", password=PASSWORD, timeout=2)
    with client, pytest.raises(AirflowUnavailableError) as down:
        client.token()
    message = str(down.value)
    assert message.startswith("Airflow did not answer POST http://127.0.0.1:9/auth/token (ConnectionError")
    assert PASSWORD not in message and "\n" not in message and PASSWORD not in repr(client)


def test_waiting_reports_changes_and_times_out_without_cancelling(standin: str) -> None:
    path = "/api/v2/dags/ohlcv_gaps/dagRuns/manual__1"
    StandIn.routes[("GET", path)] = [(200, _run(state="running"))]
    tis = {"task_instances": [{"task_id": "plan", "map_index": -1, "state": "running", "try_number": 1}]}
    StandIn.routes[("GET", f"{path}/taskInstances")] = [(200, {**tis, "total_entries": 1})]
    seen: list[str] = []
    client = AirflowClient(standin, username="ops", password=PASSWORD)
    with client, pytest.raises(AirflowWaitTimeoutError, match="still running after 0s; it goes on in Airflow"):
        client.wait_for_dag_run(
            "ohlcv_gaps", "manual__1", timeout=0.3, poll=0.1, progress=lambda p: seen.append(str(p))
        )
    assert seen == ["ohlcv_gaps run manual__1: running (1 running) after 0s"]  # reported once: nothing changed
    assert not any(m == "POST" and "cancel" in p for m, p, _, _ in StandIn.seen)
