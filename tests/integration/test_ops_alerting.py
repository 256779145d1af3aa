"""Alerts end to end through a real ``airflow dags test``: a stale series raises exactly one alert, one
e-mail (a real SMTP server on loopback, aiosmtpd) and one webhook call (a local HTTP receiver); a second
evaluation repeats nothing; catching up resolves the alert, with a resolution e-mail and webhook call. A task
that fails in any marketkeeper DAG becomes an alert through the shared task-level failure callback, and the
same task succeeding in a later run resolves it (the success callback), with a resolution e-mail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.repositories import unit_of_work
from marketkeeper.store_set import StoreConfig
from tests.airflow_cli import run_airflow
from tests.airflow_server import free_port
from tests.integration.test_ops_status import write

pytestmark = pytest.mark.integration

KEY = SeriesKey.of("alerttest", "BTC/USDT", "1m")
MARKET = "alerttest:BTC/USDT"
MARKETS = json.dumps(
    {"markets": [{"exchange": "alerttest", "symbol": "BTC/USDT", "source": "synthetic:5", "derived": []}]}
)


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, received
    controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    posts: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], posts
    server.shutdown()


def smtp_connection(port: int) -> str:
    """The alert e-mail connection, as an ``AIRFLOW_CONN_`` JSON value: plain SMTP on loopback."""
    extra = {
        "to": "ops@example.com",
        "from_email": "marketkeeper@example.com",
        "disable_ssl": True,
        "disable_tls": True,
    }
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra})


def _text(mail: Any) -> str:
    """The decoded text of every part of an e-mail."""
    return "".join(str(part.get_payload(decode=True), "utf-8") for part in mail.walk() if not part.is_multipart())


def open_alerts(url: str) -> list[Any]:
    engine = create_ledger_engine(url)
    try:
        with unit_of_work(engine) as repos:
            rows = repos.alerts.open_operator()
            repos.session.expunge_all()
            return rows
    finally:
        engine.dispose()


def test_a_stale_series_raises_one_alert_one_email_and_resolves(
    fresh_pg_url: str,
    airflow_home: Path,
    smtp: tuple[int, list[Any]],
    webhook: tuple[int, list[dict[str, Any]]],
) -> None:
    (smtp_port, inbox), (hook_port, posts) = smtp, webhook
    migrate.upgrade(fresh_pg_url)
    config = StoreConfig(ledger_url=fresh_pg_url)
    top = datetime.now(UTC).replace(second=0, microsecond=0)
    write(config, KEY, top - timedelta(hours=1), top - timedelta(minutes=15))  # ingestion stopped 15 min ago
    env = {
        "DATABASE_URL": fresh_pg_url,
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": MARKETS,
        "AIRFLOW_CONN_MARKETKEEPER_ALERTS_SMTP": smtp_connection(smtp_port),
        "AIRFLOW_CONN_MARKETKEEPER_ALERTS_WEBHOOK": json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{hook_port}/alerts"}
        ),
    }

    run_airflow(airflow_home, env, "dags", "test", "ops_monitor")
    alerts = open_alerts(fresh_pg_url)
    assert [(a.key, a.severity, a.subject) for a in alerts] == [(f"freshness:{KEY}", "high", str(KEY))]
    assert alerts[0].since is not None and alerts[0].user_id is None
    assert len(inbox) == 1 and inbox[0].rcpt_tos == ["ops@example.com"]
    mail = message_from_bytes(inbox[0].original_content)
    assert "1 new alert(s): freshness alerttest:BTC/USDT:1m" in mail["Subject"]
    assert [[a["key"] for a in p["opened"]] for p in posts] == [[f"freshness:{KEY}"]]

    run_airflow(airflow_home, env, "dags", "test", "ops_monitor")
    assert [a.id for a in open_alerts(fresh_pg_url)] == [alerts[0].id]
    assert len(inbox) == 1 and len(posts) == 1  # an open alert is never repeated

    write(config, KEY, top - timedelta(minutes=15), top + timedelta(minutes=10))  # ingestion caught up
    run_airflow(airflow_home, env, "dags", "test", "ops_monitor")
    assert open_alerts(fresh_pg_url) == []
    assert posts[-1]["resolved"] == [f"freshness:{KEY}"] and posts[-1]["opened"] == []
    assert len(inbox) == 2 and inbox[1].rcpt_tos == ["ops@example.com"]  # the resolution, by e-mail too
    resolution = message_from_bytes(inbox[1].original_content)
    assert resolution["Subject"] == f"[marketkeeper] 1 alert(s) resolved: freshness:{KEY}"
    assert f"freshness:{KEY}" in _text(resolution)


def test_a_failed_task_of_any_dag_becomes_an_alert(
    fresh_pg_url: str, airflow_home: Path, smtp: tuple[int, list[Any]]
) -> None:
    smtp_port, inbox = smtp
    migrate.upgrade(fresh_pg_url)
    env = {
        "DATABASE_URL": fresh_pg_url,
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": MARKETS,
        "AIRFLOW_CONN_MARKETKEEPER_ALERTS_SMTP": smtp_connection(smtp_port),
    }
    # A market that is not declared fails the plan at once (no retries): the callback must fire.
    result = run_airflow(
        airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", json.dumps({"markets": ["nowhere:X/Y"]}), check=False
    )
    assert "unknown market" in result.stdout + result.stderr
    alerts = open_alerts(fresh_pg_url)
    assert [(a.alert_type, a.subject) for a in alerts] == [("task_failed", "ohlcv_ingest.plan")]
    assert "unknown market(s) nowhere:X/Y" in alerts[0].message and alerts[0].extra_metadata["dag_id"] == "ohlcv_ingest"
    assert (
        len(inbox) == 1 and "task_failed ohlcv_ingest.plan" in message_from_bytes(inbox[0].original_content)["Subject"]
    )
    key = alerts[0].key

    # The same DAG with a declared market: plan succeeds, and its success resolves the failed run's alert.
    run_airflow(airflow_home, env, "dags", "test", "ohlcv_ingest", "-c", json.dumps({"markets": [MARKET]}))
    assert open_alerts(fresh_pg_url) == []
    assert len(inbox) == 2
    resolution = message_from_bytes(inbox[1].original_content)
    assert resolution["Subject"] == f"[marketkeeper] 1 alert(s) resolved: {key}"
    assert "task ohlcv_ingest.plan succeeded in run" in _text(resolution)
