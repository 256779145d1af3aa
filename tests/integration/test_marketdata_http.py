"""The market-data HTTP API on a real uvicorn server (a free loopback port) over the real PostgreSQL, InfluxDB and
Redis: API-key enforcement, exact candles as JSON and CSV (stored and resampled), clear 4xx errors, coverage,
signals, the OpenAPI page, and ``marketkeeper serve`` itself."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import uvicorn

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.marketdata import HistoricalDataProvider
from marketkeeper.marketdata.http import create_app
from marketkeeper.markets import MarketSpec
from marketkeeper.redis_client import RedisClient
from marketkeeper.services.ingest import IngestRequest, ingest_series
from marketkeeper.sources import SyntheticSource
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_URL
from tests.integration.marketdata_support import own_redis_prefix  # noqa: F401 - the fixture `prefix`

pytestmark = pytest.mark.integration

EXCHANGE = "httptest"
SYMBOL = "BTC/USDT"
T0 = datetime(2024, 5, 6, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SPEC = MarketSpec(exchange=EXCHANGE, symbol=SYMBOL, base_timeframe="1m", source="synthetic:3")
KEY = "k-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["postgresql", "influxdb"])
def config(request: pytest.FixtureRequest, pg_ledger: str, redis_url: str, prefix: str) -> Iterator[StoreConfig]:
    influxdb = None
    if request.param == "influxdb":
        database = request.getfixturevalue("influxdb_client").database
        influxdb = lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=database)  # noqa: E731
    config = StoreConfig(ledger_url=pg_ledger, influxdb=influxdb, redis=lambda: RedisClient(redis_url, prefix=prefix))
    ingest_series(config, IngestRequest(SPEC, T0, T0 + 3 * HOUR), now=NOW, source=SyntheticSource(3, clock=lambda: NOW))
    yield config
    engine = create_ledger_engine(pg_ledger)
    with engine.begin() as conn:
        for table in ("quarantined_candles", "data_quality_runs", "candles", "trading_signals"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE exchange = :e"), {"e": EXCHANGE})  # noqa: S608
        conn.execute(sa.text("DELETE FROM markets WHERE exchange = :e"), {"e": EXCHANGE})
    engine.dispose()


class Server:
    """uvicorn serving ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def provider(config: StoreConfig) -> Iterator[HistoricalDataProvider]:
    with HistoricalDataProvider(config, markets=[SPEC], clock=lambda: NOW) as opened:
        yield opened


@pytest.fixture
def api(provider: HistoricalDataProvider) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with (
        Server(create_app(provider, api_keys=["other", KEY])) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=60) as client,
    ):
        yield client


def window(start: datetime = T0, end: datetime = T0 + 3 * HOUR, **extra: str) -> dict[str, str]:
    return {"exchange": EXCHANGE, "symbol": SYMBOL, "start": start.isoformat(), "end": end.isoformat(), **extra}


def test_every_route_needs_a_valid_key_unless_anonymous_access_is_enabled(
    api: httpx.Client, provider: HistoricalDataProvider
) -> None:
    url = str(api.base_url)
    for path in ("/v1/markets", "/v1/candles", "/v1/coverage", "/v1/signals", "/v1/diagnostics", "/metrics"):
        missing = httpx.get(url + path)
        wrong = httpx.get(url + path, headers={"Authorization": "Bearer not-" + KEY})
        assert (missing.status_code, wrong.status_code) == (401, 401), path
        assert missing.headers["www-authenticate"] == "Bearer"
        assert KEY not in wrong.text
    assert api.get("/v1/markets").status_code == 200
    assert httpx.get(url + "/openapi.json").status_code == 200  # the documentation is public
    with Server(create_app(provider, allow_anonymous=True)) as open_server:
        assert httpx.get(open_server.url + "/v1/markets").status_code == 200
    with pytest.raises(Exception, match="no API keys"):
        create_app(provider)


def test_candles_as_json_and_csv_are_the_stored_floats_exactly(
    api: httpx.Client, provider: HistoricalDataProvider
) -> None:
    expected = provider.get_candles(EXCHANGE, SYMBOL, "1m", T0, T0 + 3 * HOUR)
    as_json = api.get("/v1/candles", params=window(timeframe="1m"))
    as_csv = api.get("/v1/candles", params=window(timeframe="1m", format="csv"))
    assert as_json.status_code == as_csv.status_code == 200
    body = as_json.json()
    assert (body["route"], len(body["candles"])) == ("stored", 180)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv") and len(rows) == 180
    for name in ("open", "high", "low", "close", "volume"):
        assert [c[name] for c in body["candles"]] == expected[name].tolist()
        assert [float(r[name]) for r in rows] == expected[name].tolist()
    assert [datetime.fromisoformat(r["open_time"]) for r in rows] == expected["open_time"].tolist()


def test_a_resampled_timeframe_over_http_equals_the_python_api(
    api: httpx.Client, provider: HistoricalDataProvider
) -> None:
    expected = provider.get_candles(EXCHANGE, SYMBOL, "1h", T0, T0 + 3 * HOUR)
    body = api.get("/v1/candles", params=window(timeframe="1h")).json()
    rows = list(csv.DictReader(io.StringIO(api.get("/v1/candles", params=window(timeframe="1h", format="csv")).text)))
    assert body["route"].startswith("resampled:1m") or body["route"] == "derived"
    assert [c["close"] for c in body["candles"]] == expected["close"].tolist()
    assert [c["source_count"] for c in body["candles"]] == [60, 60, 60]
    assert [float(r["high"]) for r in rows] == expected["high"].tolist()
    assert [int(r["expected_count"]) for r in rows] == [60, 60, 60]


def test_bad_parameters_get_a_clear_4xx(api: httpx.Client) -> None:
    no_start = {"exchange": EXCHANGE, "symbol": SYMBOL, "timeframe": "1m", "end": "2024-05-07"}
    minutes = window(timeframe="1m")
    cases = {
        "missing start": (api.get("/v1/candles", params=no_start), 400, "start"),
        "not a time": (api.get("/v1/candles", params=minutes | {"start": "yesterday"}), 400, "is not an ISO 8601"),
        "reversed": (api.get("/v1/candles", params=window(T0 + HOUR, T0, timeframe="1m")), 400, "is after end"),
        "bad format": (api.get("/v1/candles", params=minutes | {"format": "xml"}), 400, "format"),
        "unknown market": (
            api.get("/v1/candles", params=minutes | {"symbol": "DOGE/USDT"}),
            404,
            "declared markets: httptest:BTC/USDT",
        ),
        "unknown timeframe": (api.get("/v1/candles", params=window(timeframe="7m")), 404, "no such timeframe"),
        "bad signal limit": (api.get("/v1/signals", params=window(limit="0")), 400, "limit"),
    }
    for name, (response, status, text) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert text in response.json()["error"], name
    assert "1m" in cases["unknown timeframe"][0].json()["known"]


def test_coverage_signals_metadata_and_diagnostics(api: httpx.Client, provider: HistoricalDataProvider) -> None:
    provider.store_signal(EXCHANGE, SYMBOL, "bot-1", "buy", 1.25, 0.9, T0 + HOUR)
    coverage = api.get("/v1/coverage", params=window(timeframe="1m")).json()
    signals = api.get("/v1/signals", params=window()).json()["signals"]
    meta = api.get("/v1/metadata", params={"exchange": EXCHANGE, "symbol": SYMBOL}).json()
    markets = api.get("/v1/markets").json()["markets"]
    diagnostics = api.get("/v1/diagnostics").json()
    assert (coverage["candles"], coverage["missing"], coverage["gaps"]) == (180, 0, [])
    signal = {"exchange": EXCHANGE, "symbol": SYMBOL, "source": "bot-1", "kind": "buy", "value": 1.25}
    assert signals == [signal | {"confidence": 0.9, "time": (T0 + HOUR).isoformat()}]
    assert meta["last_open_time"] == (T0 + 3 * HOUR - timedelta(minutes=1)).isoformat()
    assert [m["exchange"] + ":" + m["symbol"] for m in markets] == [f"{EXCHANGE}:{SYMBOL}"]
    assert diagnostics["reachable"] is True and diagnostics["queries"] >= 1
    exposition = api.get("/metrics")
    assert exposition.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "marketkeeper_marketdata_queries_total" in exposition.text
    assert 'marketkeeper_marketdata_latency_seconds{quantile="0.99"}' in exposition.text
    schema = api.get("/openapi.json").json()
    assert {"/v1/markets", "/v1/candles", "/v1/coverage", "/v1/signals"} <= set(schema["paths"])
    assert api.get("/docs").status_code == 200


def test_marketkeeper_serve_enforces_its_keys_and_refuses_to_start_without_any(
    config: StoreConfig, pg_ledger: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": pg_ledger,
        "INFLUXDB_URL": "",
        "REDIS_URL": "",
        "MARKETKEEPER_MARKETS": json.dumps({"markets": [SPEC.model_dump(mode="json", exclude_none=True)]}),
        "MARKETKEEPER_API_KEYS": f" {KEY} , second",
    }
    env.pop("MARKETKEEPER_API_ALLOW_ANONYMOUS", None)
    if config.influxdb is not None:
        client = config.influxdb()
        env |= {"INFLUXDB_URL": INFLUXDB_TEST_URL, "INFLUXDB_BUCKET": client.database}
        client.close()
    refused = subprocess.run(
        [sys.executable, "-m", "marketkeeper", "serve", "--port", str(port)],
        env={**env, "MARKETKEEPER_API_KEYS": ""},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert refused.returncode == 1 and refused.stderr.strip().startswith("error: no API keys")
    server = subprocess.Popen(
        [sys.executable, "-m", "marketkeeper", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(f"serve did not start: {server.communicate(timeout=5)}") from None
                time.sleep(0.2)
        assert httpx.get(url + "/v1/markets").status_code == 401
        answer = httpx.get(
            url + "/v1/candles", params=window(timeframe="1m", format="csv"), headers={"Authorization": "Bearer second"}
        )
        assert answer.status_code == 200 and len(answer.text.splitlines()) == 181
        pd.testing.assert_index_equal(
            pd.Index(answer.text.splitlines()[0].split(",")[:6]),
            pd.Index(["open_time", "open", "high", "low", "close", "volume"]),
        )
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert KEY not in out + err
