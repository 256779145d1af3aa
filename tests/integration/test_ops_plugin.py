"""The ops plugin on a real Airflow api-server: anonymous requests refused on every route, the page in headless
Chromium (Selenium, Debian's chromium-driver) listing the declared markets with their freshness and a series'
open gap, the health endpoints' 200/503, and Debian's Prometheus scraping ``/metrics`` (the freshness gauge
read back through Prometheus' own query API). A screenshot of the page is saved under ``var/``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from marketkeeper.candles import SeriesKey
from marketkeeper.markets import MarketSpec
from marketkeeper.services.gaps import detect_gaps
from marketkeeper.store_set import StoreConfig
from tests.airflow_cli import ROOT
from tests.airflow_server import AirflowServer, free_port, running_airflow
from tests.integration.test_ops_status import write

pytestmark = pytest.mark.integration

FRESH = SeriesKey.of("uitest", "BTC/USDT", "1m")
STALE = SeriesKey.of("uitest", "ETH/USDT", "1m")
MARKETS = json.dumps(
    {
        "markets": [
            {"exchange": k.exchange, "symbol": k.symbol, "source": "synthetic:5", "derived": []} for k in (FRESH, STALE)
        ]
    }
)
ROUTES = ("/marketkeeper/", "/marketkeeper/status", "/marketkeeper/metrics", "/marketkeeper/health/postgres")
SCREENSHOT = Path(os.environ.get("MARKETKEEPER_HOME", ROOT / "var")) / "ops-page.png"


#: The lag SLO of the test's Airflow: room for the minutes the tests take, so FRESH stays within it.
MAX_LAG = 15


@pytest.fixture(scope="module")
def top() -> datetime:
    """The minute the candles were written up to: FRESH's newest candle opened a minute before."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
def ledger() -> Iterator[str]:
    """A migrated PostgreSQL ledger of this module's own: the page must show only what the test wrote."""
    from tests.conftest import own_pg_ledger

    with own_pg_ledger("ops_ui") as url:
        yield url


@pytest.fixture(scope="module")
def server(ledger: str, top: datetime) -> Iterator[AirflowServer]:
    config = StoreConfig(ledger_url=ledger)
    # FRESH: every closed candle up to now, but a 20-candle hole; STALE: ingestion stopped an hour ago.
    write(config, FRESH, top - timedelta(hours=2), top - timedelta(minutes=80))
    write(config, FRESH, top - timedelta(minutes=60), top)
    write(config, STALE, top - timedelta(hours=2), top - timedelta(minutes=60))
    spec = MarketSpec(exchange="uitest", symbol="BTC/USDT", source="synthetic:5")
    detect_gaps(config, spec, start=top - timedelta(hours=2), end=top)
    env = {
        "DATABASE_URL": ledger,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "AIRFLOW_VAR_MARKETKEEPER_MARKETS": MARKETS,
        "MARKETKEEPER_SLO_MAX_LAG_CANDLES": str(MAX_LAG),
    }
    with running_airflow(env) as airflow:
        yield airflow


def token(server: AirflowServer) -> str:
    answer = requests.post(
        f"{server.url}/auth/token", json={"username": server.username, "password": server.password}, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def get(server: AirflowServer, path: str, **kw: Any) -> requests.Response:
    return requests.get(f"{server.url}{path}", timeout=60, **kw)


def test_anonymous_and_forged_requests_are_refused(server: AirflowServer) -> None:
    for route in ROUTES:
        anonymous = get(server, route)
        assert anonymous.status_code == 401, (route, anonymous.status_code, anonymous.text[:200])
        assert "uitest" not in anonymous.text
        forged = get(server, route, headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code in (401, 403), (route, forged.status_code)
        bad_cookie = get(server, route, cookies={"_token": "not-a-token"})
        assert bad_cookie.status_code in (401, 403), (route, bad_cookie.status_code)


def test_status_document_and_health_endpoints(server: AirflowServer) -> None:
    auth = {"Authorization": f"Bearer {token(server)}"}
    document = get(server, "/marketkeeper/status", headers=auth)
    assert document.status_code == 200, document.text
    series = {s["series"]: s for s in document.json()["series"]}
    assert set(series) == {str(FRESH), str(STALE)}
    assert series[str(FRESH)]["lag_candles"] <= MAX_LAG and series[str(FRESH)]["open_gaps"] == 1
    assert series[str(FRESH)]["missing_candles"] == 20 and series[str(FRESH)]["status"] == "gaps"
    assert series[str(STALE)]["status"] == "stale" and series[str(STALE)]["lag_candles"] >= 60

    ledger = get(server, "/marketkeeper/health/postgres", headers=auth)
    assert ledger.status_code == 200 and ledger.json()["ok"] is True and "postgresql" in ledger.json()["version"]
    redis = get(server, "/marketkeeper/health/redis", headers=auth)
    assert redis.status_code == 503 and redis.json()["ok"] is False and redis.json()["error"]
    influxdb = get(server, "/marketkeeper/health/influxdb", headers=auth)
    assert influxdb.status_code == 503 and "not configured" in influxdb.json()["error"]
    assert get(server, "/marketkeeper/health/mysql", headers=auth).status_code == 404

    plugins = {p["name"]: p for p in server.api("GET", "/api/v2/plugins")["plugins"]}
    views = plugins["marketkeeper_ops"]["external_views"]
    assert [(v["url_route"], v["href"], v["destination"]) for v in views] == [
        ("marketkeeper-ops", "/marketkeeper/", "nav")
    ]


def test_the_page_in_headless_chromium(server: AirflowServer) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        driver.get(f"{server.url}/marketkeeper/")
        assert "uitest" not in driver.page_source  # not logged in: refused
        # The nav entry of the Airflow UI sends an anonymous visitor to the login form, then back to the page.
        driver.get(f"{server.url}/plugin/marketkeeper-ops")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.NAME, "username"))
        driver.find_element(By.NAME, "username").send_keys(server.username)
        driver.find_element(By.NAME, "password").send_keys(server.password)
        driver.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
        frame = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.TAG_NAME, "iframe"))[0]
        assert (frame.get_attribute("src") or "").endswith("/marketkeeper/")
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#series tbody tr"))
        rows = {r.get_attribute("data-series"): r for r in driver.find_elements(By.CSS_SELECTOR, "#series tbody tr")}
        assert set(rows) == {str(FRESH), str(STALE)}
        fresh, stale = rows[str(FRESH)], rows[str(STALE)]
        assert fresh.get_attribute("class") == "gaps" and int(fresh.find_element(By.CLASS_NAME, "lag").text) <= MAX_LAG
        assert fresh.find_element(By.CLASS_NAME, "gaps").text == "1"
        assert fresh.find_element(By.CLASS_NAME, "missing").text == "20"
        assert stale.get_attribute("class") == "stale" and int(stale.find_element(By.CLASS_NAME, "lag").text) >= 60
        link = fresh.find_element(By.TAG_NAME, "a").get_attribute("href")
        assert link is not None and link.endswith("/dags/ohlcv_ingest/runs")
        assert "no backups configured" in driver.find_element(By.ID, "backups").text
        assert "DOWN" in driver.find_element(By.ID, "stores").text  # the unreachable Redis
        driver.switch_to.default_content()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))

        # The page's own URL, with the session cookie the login set: filtered by status.
        driver.get(f"{server.url}/marketkeeper/?status=stale")
        shown = [r.get_attribute("data-series") for r in driver.find_elements(By.CSS_SELECTOR, "#series tbody tr")]
        assert shown == [str(STALE)]
    finally:
        driver.quit()


def test_prometheus_scrapes_the_freshness_gauge(server: AirflowServer, top: datetime, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is missing: run scripts/test-tools.sh"
    port = free_port()
    target = server.url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "5s", "scrape_timeout": "5s"},
        "scrape_configs": [
            {
                "job_name": "marketkeeper",
                "metrics_path": "/marketkeeper/metrics",
                "authorization": {"type": "Bearer", "credentials": token(server)},
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    with tempfile.TemporaryDirectory(prefix="marketkeeper-prometheus-") as data:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("wb"),
        )
        try:
            query = 'marketkeeper_series_freshness_lag_candles{exchange="uitest",symbol="BTC/USDT",timeframe="1m"}'
            deadline = time.monotonic() + 90
            result: list[Any] = []
            while time.monotonic() < deadline and not result:
                time.sleep(2)
                try:
                    answer = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5)
                    result = answer.json()["data"]["result"]
                except (requests.RequestException, KeyError, ValueError):
                    continue
            targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()["data"]
            assert result, json.dumps(targets)[:3000]
            # The lag at the scrape: the candles closed since FRESH's newest one (opened at top - 1 min).
            scraped_at = requests.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": f"timestamp({query})"}, timeout=5
            ).json()["data"]["result"][0]["value"][1]
            closed_minutes = int(float(scraped_at) // 60) - int(top.timestamp() // 60)
            assert float(result[0]["value"][1]) in (closed_minutes, closed_minutes + 1)
            stale = requests.get(
                f"http://127.0.0.1:{port}/api/v1/query",
                params={"query": 'marketkeeper_series_freshness_lag_candles{symbol="ETH/USDT"}'},
                timeout=5,
            ).json()["data"]["result"]
            assert stale and float(stale[0]["value"][1]) >= 60
            assert targets["activeTargets"][0]["health"] == "up"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
