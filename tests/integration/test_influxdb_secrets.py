"""No InfluxDB password or token in any output: URL credentials, errors, logs, ``repr`` and store names.

A sentinel password travels in ``INFLUXDB_URL`` (``http://user:s3ntinel-Pa55@host``) and must show up nowhere:
not in ``str(exc)`` or ``repr`` of any error, not in a client's or store's name, not in captured logs. The
wrong-credentials cases run against a second, real InfluxDB with authentication on, started by the fixture
in a temporary directory (the project's server runs without auth).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import requests
from pydantic import SecretStr

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError, MarketkeeperError, StoreUnavailableError
from marketkeeper.influxdb import (
    InfluxDBClient,
    InfluxDBDatabaseNotFoundError,
    InfluxDBError,
    InfluxDBWriteError,
    InfluxQLError,
    split_credentials,
)
from marketkeeper.settings import Settings
from marketkeeper.stores import CandleStoreError, InfluxDBCandleStore
from marketkeeper.stores.base import CandleStoreMissingError
from tests.conftest import INFLUXDB_TEST_URL

pytestmark = pytest.mark.integration

SENTINEL = "s3ntinel-Pa55"
TOKEN = "t0ken-s3ntinel"
ADMIN = "admin"
ADMIN_PASSWORD = "adm1n-s3ntinel"


_ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


def _one_candle() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "open_time": pd.to_datetime(["2024-03-01T00:00:00Z"]),
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
            "volume": [10.0],
        }
    )


def _with_credentials(url: str, user: str = "reader", password: str = SENTINEL) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def _assert_clean(*texts: object) -> None:
    for text in texts:
        for secret in (SENTINEL, TOKEN, ADMIN_PASSWORD):
            assert secret not in str(text), f"{secret!r} leaked into {text!r}"


def _assert_error_clean(exc: BaseException) -> None:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        _assert_clean(str(error), repr(error), *(str(a) for a in error.args))


@pytest.fixture(scope="module")
def auth_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh InfluxDB 1.x with ``auth-enabled``, an admin user, stopped after the module."""
    influxd = shutil.which("influxd")
    if influxd is None:
        pytest.fail("influxd is not installed (run `make services`)")
    home = tmp_path_factory.mktemp("influx-auth")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = home / "influxdb.conf"
    config.write_text(
        'reporting-disabled = true\nbind-address = "127.0.0.1:0"\n'
        f'[meta]\n  dir = "{home / "meta"}"\n'
        f'[data]\n  dir = "{home / "data"}"\n  wal-dir = "{home / "wal"}"\n  query-log-enabled = false\n'
        f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{port}"\n  auth-enabled = true\n'
        "  log-enabled = false\n[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n"
    )
    log_file = (home / "influxd.log").open("wb")
    process = subprocess.Popen([influxd, "-config", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=1).status_code == 204:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"influxd with auth did not start: {Path(home / 'influxd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        # With auth on and no user yet, InfluxDB 1.x accepts exactly this statement without credentials.
        create = requests.post(
            f"{url}/query",
            data={"q": f"CREATE USER {ADMIN} WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES"},
            timeout=5,
        )
        create.raise_for_status()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


# --- the URL's credentials -----------------------------------------------------------------------------


def test_credentials_in_the_url_become_basic_auth_and_leave_the_url() -> None:
    with InfluxDBClient(_with_credentials("http://influx:8086/"), database="d") as client:
        assert client.url == "http://influx:8086"
        assert client.session.auth == ("reader", SENTINEL)
        _assert_clean(client.url, repr(client))
    # Percent-encoded credentials are decoded for the auth header, and hidden all the same.
    clean, user, password = split_credentials("https://us%40er:p%3Aw%2F@influx:8086/prefix")
    assert (clean, user, password) == ("https://influx:8086/prefix", "us@er", "p:w/")


def test_url_credentials_that_disagree_with_the_settings_are_refused_without_showing_them() -> None:
    with pytest.raises(ConfigurationError, match="one place") as other_user:
        InfluxDBClient(_with_credentials("http://influx:8086"), database="d", username="someone", password="x")
    with pytest.raises(ConfigurationError, match="differs") as other_password:
        InfluxDBClient(_with_credentials("http://influx:8086"), database="d", username="reader", password="other")
    with pytest.raises(ConfigurationError, match="not both") as with_token:
        InfluxDBClient(_with_credentials("http://influx:8086"), database="d", token=TOKEN)
    with pytest.raises(ConfigurationError, match="query string") as in_query:
        InfluxDBClient(f"http://influx:8086/?u=reader&p={SENTINEL}", database="d")
    with pytest.raises(ConfigurationError, match="http://host:8086") as bad_scheme:
        InfluxDBClient(f"ftp://reader:{SENTINEL}@influx:8086", database="d")
    for caught in (other_user, other_password, with_token, in_query, bad_scheme):
        _assert_error_clean(caught.value)
    # Agreeing credentials in both places are fine.
    with InfluxDBClient(_with_credentials("http://influx:8086"), database="d", username="reader") as client:
        assert client.session.auth == ("reader", SENTINEL)


def test_from_settings_takes_the_url_credentials_out() -> None:
    settings = Settings(influxdb_url=_with_credentials("http://influx:8086"), influxdb_bucket="candles")
    with InfluxDBClient.from_settings(settings) as client:
        assert client.url == "http://influx:8086"
        assert client.session.auth == ("reader", SENTINEL)
    both = Settings(
        influxdb_url=_with_credentials("http://influx:8086"),
        influxdb_username="reader",
        influxdb_password=SecretStr("another"),
    )
    with pytest.raises(ConfigurationError) as caught:
        InfluxDBClient.from_settings(both)
    _assert_error_clean(caught.value)


# --- nothing leaks from the real servers ---------------------------------------------------------------


def test_writes_queries_and_store_names_on_the_project_server_hide_the_password(
    influxdb_client: InfluxDBClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = _with_credentials(INFLUXDB_TEST_URL)
    # InfluxDB here runs without auth and ignores the credentials, so these are real writes and reads.
    with InfluxDBClient(url, database=influxdb_client.database) as client:
        store = InfluxDBCandleStore(client)
        key = SeriesKey.of("binance", "BTC/USDT", "1m")
        client.write_lines(["m f=1 1"])
        assert client.query('SELECT "f" FROM "m"')[0].values == [[1, 1]]
        _assert_clean(client.url, repr(client), store.name, repr(store))
        assert store.name == f"InfluxDB candle store ({INFLUXDB_TEST_URL}, database {client.database!r})"

        errors: list[BaseException] = []
        with pytest.raises(InfluxDBWriteError) as refused:  # a 400
            client.write_lines(["m f= 2"])
        errors.append(refused.value)
        with pytest.raises(InfluxQLError) as bad_query:
            client.query("SELEC nonsense")
        errors.append(bad_query.value)
        with pytest.raises(CandleStoreError) as store_error:
            store.write(SeriesKey.of("binance", "line\nbreak", "1m"), _one_candle())
        errors.append(store_error.value)
    with InfluxDBClient(url, database=f"{influxdb_client.database}_missing") as missing:
        with pytest.raises(InfluxDBDatabaseNotFoundError) as not_found:
            missing.write_lines(["m f=1 1"])
        errors.append(not_found.value)
        with pytest.raises(CandleStoreMissingError) as store_missing:
            InfluxDBCandleStore(missing).read(key, *_ALL_TIME)
        errors.append(store_missing.value)
    for error in errors:
        _assert_error_clean(error)
        assert INFLUXDB_TEST_URL in str(error) or "line" in str(error)
    _assert_clean(caplog.text)


def test_an_unreachable_server_error_names_the_host_not_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = InfluxDBClient(_with_credentials("http://127.0.0.1:1"), database="x", max_retries=1, timeout=2)
    store = InfluxDBCandleStore(client, owns_client=True)
    with store:
        with pytest.raises(StoreUnavailableError) as direct:
            client.ping()
        with pytest.raises(CandleStoreError) as wrapped:
            store.write(SeriesKey.of("binance", "BTC/USDT", "1m"), _one_candle())
    assert "127.0.0.1:1" in str(direct.value)
    assert store.name in str(wrapped.value)
    _assert_error_clean(direct.value)
    _assert_error_clean(wrapped.value)
    _assert_clean(caplog.text, store.name)


def test_wrong_credentials_fail_clearly_without_showing_them(
    auth_influxdb: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    database = f"secrets_{uuid.uuid4().hex[:8]}"
    with InfluxDBClient(auth_influxdb, database=database, username=ADMIN, password=ADMIN_PASSWORD) as admin:
        assert admin.create_database() is True
        admin.write_lines(["m f=1 1"])  # the right credentials work
    errors: list[BaseException] = []
    with InfluxDBClient(_with_credentials(auth_influxdb, ADMIN, SENTINEL), database=database) as wrong:
        with pytest.raises(InfluxDBWriteError) as write:
            wrong.write_lines(["m f=2 2"])
        assert write.value.status == 401
        errors.append(write.value)
        with pytest.raises(InfluxDBError) as query:
            wrong.query('SELECT "f" FROM "m"')
        assert query.value.status == 401
        errors.append(query.value)
        with pytest.raises(CandleStoreError) as store:
            InfluxDBCandleStore(wrong).read(SeriesKey.of("binance", "BTC/USDT", "1m"), *_ALL_TIME)
        errors.append(store.value)
        _assert_clean(repr(wrong), InfluxDBCandleStore(wrong).name)
    with InfluxDBClient(auth_influxdb, database=database, token=TOKEN) as token_client:
        with pytest.raises(MarketkeeperError) as with_token:
            token_client.write_lines(["m f=3 3"])
        errors.append(with_token.value)
        _assert_clean(repr(token_client))
    for error in errors:
        _assert_error_clean(error)
        assert auth_influxdb in str(error)
    _assert_clean(caplog.text)
    with InfluxDBClient(auth_influxdb, database=database, username=ADMIN, password=ADMIN_PASSWORD) as admin:
        admin.drop_database()
