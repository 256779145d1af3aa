"""InfluxDBClient against the real InfluxDB (1.6 here): escaping round-trips, batching, gzip, errors, retries.

The only stand-in server is a loopback ``http.server`` playing a flaky proxy that answers 503, to prove the
retries; everything else talks to the real InfluxDB in the ``marketkeeper_test`` database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from marketkeeper.errors import ConfigurationError, StoreUnavailableError
from marketkeeper.influxdb import (
    InfluxDBClient,
    InfluxDBDatabaseNotFoundError,
    InfluxDBWriteError,
    InfluxQLError,
    Point,
    format_line,
    quote_identifier,
    quote_string,
)
from marketkeeper.settings import Settings
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL

integration = pytest.mark.integration

# Every character line protocol or InfluxQL treats specially, in each role a name can play.
HOSTILE_MEASUREMENT = "candles \"q\" 's' ,c =e \\b ü🚀"
HOSTILE_TAG_KEYS = ["sym \"bol\" 'k' ,c =e \\b", "ex,change", "🚀"]
HOSTILE_TAG_VALUES = [
    'BTC "USDT"',
    "it's",
    "a,b=c d",
    "\\leading",
    "mid\\dle",
    "two\\\\slashes",
    "ünïcode 🚀",
    " lead and trail ",
    "cr\rinside",
    "tab\tinside",
    "=leading equals",
]
HOSTILE_FIELD_KEY = "close \"px\" 'q' ,c =e \\b ü"
HOSTILE_STRINGS = [
    'say "hi"',
    "it's",
    "trailing backslash\\",
    "\\\\double\\\\",
    "line\nbreak\r\nand crlf",
    'back\\"slash quote',
    "a,b=c d",
    "ünïcode 🚀",
    "",
]


def _values(client: InfluxDBClient, q: str, **params: object) -> list[list[Any]]:
    series = client.query(q, params=params or None)
    return [row for s in series for row in s.values]


def _count(client: InfluxDBClient, measurement: str, field: str) -> int:
    # Identifiers cannot be bound parameters; quote_identifier is what makes this safe.
    q = f"SELECT COUNT({quote_identifier(field)}) FROM {quote_identifier(measurement)}"  # noqa: S608
    rows = _values(client, q)
    return int(rows[0][1]) if rows else 0


@integration
def test_ping_reports_the_server_version(influxdb_client: InfluxDBClient) -> None:
    info = influxdb_client.ping()
    assert info.version.startswith(("1.", "2.", "3."))
    assert info.latency_ms >= 0


@integration
def test_hostile_names_and_values_round_trip_unchanged(influxdb_client: InfluxDBClient) -> None:
    key, exchange_key, rocket_key = HOSTILE_TAG_KEYS
    lines = [
        format_line(
            HOSTILE_MEASUREMENT,
            {key: value, exchange_key: "binance", rocket_key: "moon"},
            {HOSTILE_FIELD_KEY: HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)], "n": i},
            1_700_000_000_000_000_000 + i,
        )
        for i, value in enumerate(HOSTILE_TAG_VALUES)
    ]
    assert influxdb_client.write_lines(lines) == len(lines)

    measurement = quote_identifier(HOSTILE_MEASUREMENT)
    assert [row[0] for row in _values(influxdb_client, "SHOW MEASUREMENTS")] == [HOSTILE_MEASUREMENT]
    tag_keys = {row[0] for row in _values(influxdb_client, f"SHOW TAG KEYS FROM {measurement}")}
    assert tag_keys == set(HOSTILE_TAG_KEYS)
    field_keys = {row[0] for row in _values(influxdb_client, f"SHOW FIELD KEYS FROM {measurement}")}
    assert field_keys == {HOSTILE_FIELD_KEY, "n"}
    tag_values = _values(influxdb_client, f"SHOW TAG VALUES FROM {measurement} WITH KEY = {quote_identifier(key)}")
    assert sorted(row[1] for row in tag_values) == sorted(HOSTILE_TAG_VALUES)

    select = f"SELECT {quote_identifier(HOSTILE_FIELD_KEY)}, {quote_identifier(key)} FROM {measurement}"  # noqa: S608
    for i, value in enumerate(HOSTILE_TAG_VALUES):
        expected = [[1_700_000_000_000_000_000 + i, HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)], value]]
        # A bound parameter, and the quoted literal for where a parameter cannot go.
        assert _values(influxdb_client, f"{select} WHERE {quote_identifier(key)} = $v", v=value) == expected
        if "\r" not in value:
            literal = f"{select} WHERE {quote_identifier(key)} = {quote_string(value)}"
            assert _values(influxdb_client, literal) == expected
    for text in HOSTILE_STRINGS:
        where = f" WHERE {quote_identifier(HOSTILE_FIELD_KEY)} = $s"
        rows = _values(influxdb_client, select + where, s=text)
        assert rows and all(row[1] == text for row in rows)


@integration
def test_names_format_line_refuses_really_break_on_influxdb_1x(influxdb_client: InfluxDBClient) -> None:
    """The proof behind the refusals: written by hand, these names come back changed or not at all."""
    if not influxdb_client.ping().version.startswith("1."):
        pytest.skip("documents InfluxDB 1.x parser behaviour")
    for name in ["line\nbreak", "trailing\\", 'quote\\"after']:
        with pytest.raises(ValueError, match=r"newline|backslash"):
            format_line("m", {"t": name}, {"f": 1.0})
    # No escape for a newline: "\<newline>" is stored as backslash + newline.
    influxdb_client.write_lines(["nl,t=line\\\nbreak f=1 1"])
    stored = _values(influxdb_client, 'SHOW TAG VALUES FROM "nl" WITH KEY = "t"')
    assert [row[1] for row in stored] == ["line\\\nbreak"]
    # A trailing backslash escapes the separator after it.
    with pytest.raises(InfluxDBWriteError):
        influxdb_client.write_lines(["tb,t=trailing\\ f=1 1"])
    # A backslash before a quote in a measurement loses the backslash.
    influxdb_client.write_lines(['quote\\"after f=1 1'])
    assert 'quote"after' in [row[0] for row in _values(influxdb_client, "SHOW MEASUREMENTS")]


@integration
def test_writes_in_batches_and_stores_every_line(influxdb_client: InfluxDBClient) -> None:
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB, batch_size=100)
    statuses: list[int] = []
    client.session.hooks["response"].append(lambda r, *a, **k: statuses.append(r.status_code))
    lines = (format_line("candles", {"symbol": "BTC/USDT"}, {"close": float(i)}, i) for i in range(1050))
    with client:
        assert client.write_lines(lines) == 1050
    assert statuses == [204] * 11
    assert _count(influxdb_client, "candles", "close") == 1050


@integration
def test_write_bodies_are_plain_unless_gzip(influxdb_client: InfluxDBClient) -> None:
    sent: list[requests.PreparedRequest] = []
    influxdb_client.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    influxdb_client.write_lines([format_line("candles", {}, {"close": 1.0}, 1)])
    (request,) = [r for r in sent if r.path_url.startswith("/write")]
    assert "Content-Encoding" not in request.headers
    assert request.body == b"candles close=1.0 1"

    with InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB, gzip=True) as zipped:
        zipped.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
        zipped.write_lines([format_line("candles", {}, {"close": 2.0}, 2)])
    assert sent[-1].headers["Content-Encoding"] == "gzip"
    assert isinstance(sent[-1].body, bytes) and sent[-1].body[:2] == b"\x1f\x8b"
    assert _count(influxdb_client, "candles", "close") == 2


@integration
def test_answers_travel_plain_unless_gzip(influxdb_client: InfluxDBClient) -> None:
    # requests asks for gzip by default, and InfluxDB then compresses every answer on the fly: on loopback
    # that more than doubled the time of a long read. Plain by default; gzip when the client is told to.
    influxdb_client.write_lines([format_line("candles", {}, {"close": float(i)}, i) for i in range(1, 2001)])
    seen: list[requests.Response] = []
    influxdb_client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    assert _count(influxdb_client, "candles", "close") == 2000
    assert seen[-1].request.headers["Accept-Encoding"] == "identity"
    assert "Content-Encoding" not in seen[-1].headers
    with InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB, gzip=True) as zipped:
        zipped.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
        assert _count(zipped, "candles", "close") == 2000
        chunks = list(zipped.query_chunked("SELECT close FROM candles", chunk_size=500))
    assert sum(len(c.csv.splitlines()) for c in chunks) == 2000
    assert seen[-1].headers["Content-Encoding"] == "gzip"


@integration
def test_a_chunked_read_left_early_leaves_the_client_usable(influxdb_client: InfluxDBClient) -> None:
    # The answer is read ahead by a thread of its own: stopping after the first chunk must stop it and leave
    # the client's connections fit for the next query, however often it happens.
    influxdb_client.write_lines([format_line("candles", {}, {"close": float(i)}, i) for i in range(1, 5001)])
    for _ in range(5):
        chunks = influxdb_client.query_chunked("SELECT close FROM candles", chunk_size=100)
        first = next(iter(chunks))
        assert first.csv.splitlines()[0] == b"1,1"
        chunks.close()
    whole = list(influxdb_client.query_chunked("SELECT close FROM candles", chunk_size=1000))
    assert [len(c.csv.splitlines()) for c in whole] == [1000] * 5
    assert _count(influxdb_client, "candles", "close") == 5000


@integration
def test_refused_write_names_the_server_message_and_the_line(influxdb_client: InfluxDBClient) -> None:
    influxdb_client.write_lines(["candles close=1.5 1"])
    with pytest.raises(InfluxDBWriteError) as conflict:
        influxdb_client.write_lines(['candles close="text" 2'])
    assert conflict.value.status == 400
    assert "field type conflict" in conflict.value.server_message

    # Documented batch semantics: earlier batches are stored, the valid lines of the refused batch too
    # (InfluxDB's partial write), and no later batch is sent.
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB, batch_size=2)
    good = [format_line("batch", {}, {"v": 1.0}, t) for t in range(1, 7)]
    bad_line = "batch v= 99"
    with client, pytest.raises(InfluxDBWriteError) as malformed:
        client.write_lines([good[0], good[1], good[2], bad_line, good[4], good[5]])
    assert malformed.value.status == 400
    assert malformed.value.line == bad_line
    assert malformed.value.lines_before == 2
    assert "unable to parse" in malformed.value.server_message
    assert [row[0] for row in _values(influxdb_client, 'SELECT "v" FROM "batch"')] == [1, 2, 3]


@integration
def test_query_errors_raise_influxql_error(influxdb_client: InfluxDBClient) -> None:
    with pytest.raises(InfluxQLError) as parse:
        influxdb_client.query("SELEC nonsense")
    assert parse.value.status == 400
    assert "error parsing query" in parse.value.server_message
    with pytest.raises(InfluxQLError, match="database not found") as statement:
        influxdb_client.query(f"SHOW MEASUREMENTS; SHOW TAG KEYS ON {quote_identifier('no such db')}")
    assert statement.value.status is None


@integration
def test_rewriting_the_same_points_changes_nothing(influxdb_client: InfluxDBClient) -> None:
    points = [
        Point(
            "candles",
            {"close": 100.0 + i, "volume": i},
            {"symbol": "ETH/USDT"},
            datetime(2024, 1, 1, 0, i, tzinfo=UTC),
        )
        for i in range(10)
    ]
    assert influxdb_client.write_points(points) == 10
    before = _values(influxdb_client, 'SELECT * FROM "candles"')
    assert influxdb_client.write_points(points) == 10
    assert _values(influxdb_client, 'SELECT * FROM "candles"') == before
    assert _count(influxdb_client, "candles", "close") == 10
    assert before[3][0] == 1_704_067_380_000_000_000  # 2024-01-01T00:03Z in ns, exactly
    # Datetimes and Decimals bind as query parameters.
    later = _values(
        influxdb_client,
        'SELECT "close" FROM "candles" WHERE time >= $start AND "close" >= $floor',
        start=datetime(2024, 1, 1, 0, 7, tzinfo=UTC),
        floor=Decimal("108"),
    )
    assert [row[1] for row in later] == [108.0, 109.0]


@integration
def test_unreachable_server_raises_store_unavailable_quickly() -> None:
    client = InfluxDBClient("http://127.0.0.1:1", database="x", max_retries=1, backoff_factor=0.01, timeout=2)
    started = time.monotonic()
    with client, pytest.raises(StoreUnavailableError) as info:
        client.write_lines(["m f=1"])
    assert time.monotonic() - started < 2
    assert info.value.store == "InfluxDB"
    assert "127.0.0.1:1" in str(info.value)
    with pytest.raises(StoreUnavailableError):
        client.ping()
    with pytest.raises(StoreUnavailableError):
        client.query("SHOW DATABASES")


class _FlakyProxy(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` writes, then 204."""

    failures = 2
    requests_seen: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests_seen.append(self.headers.get("Content-Encoding", ""))
        if len(self.requests_seen) <= self.failures:
            body = b'{"error":"upstream unavailable"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_proxy() -> Iterator[tuple[str, type[_FlakyProxy]]]:
    handler = type("Handler", (_FlakyProxy,), {"requests_seen": [], "failures": 2})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join()


@integration
def test_5xx_answers_are_retried(flaky_proxy: tuple[str, type[_FlakyProxy]]) -> None:
    url, handler = flaky_proxy
    with InfluxDBClient(url, database="x", max_retries=3, backoff_factor=0.01, gzip=True) as client:
        assert client.write_lines(["m f=1 1"]) == 1
    assert handler.requests_seen == ["gzip"] * 3  # the same compressed body each time


@integration
def test_5xx_after_the_last_retry_raises_write_error(flaky_proxy: tuple[str, type[_FlakyProxy]]) -> None:
    url, handler = flaky_proxy
    handler.failures = 100
    client = InfluxDBClient(url, database="x", max_retries=2, backoff_factor=0.01)
    with client, pytest.raises(InfluxDBWriteError) as info:
        client.write_lines(["m f=1 1"])
    assert info.value.status == 503
    assert info.value.server_message == "upstream unavailable"
    assert len(handler.requests_seen) == 3


@integration
def test_secrets_stay_out_of_logs_and_repr(influxdb_client: InfluxDBClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # InfluxDB 1.x without auth ignores the credentials, so this is a real write.
    with InfluxDBClient(INFLUXDB_TEST_URL, database=INFLUXDB_TEST_DB, username="u", password="s3cret-pw") as c:
        c.write_lines(["m f=1 1"])
        assert "s3cret-pw" not in repr(c)
    assert "s3cret-pw" not in caplog.text


def test_auth_goes_in_headers_not_urls() -> None:
    with InfluxDBClient("http://influx:8086", database="d", token="t0ken") as client:
        assert client.session.headers["Authorization"] == "Token t0ken"
        assert "t0ken" not in repr(client)
    with InfluxDBClient("http://influx:8086", database="d", username="u", password="p") as client:
        assert client.session.auth == ("u", "p")
    with pytest.raises(ConfigurationError, match="not both"):
        InfluxDBClient("http://influx:8086", database="d", token="t", username="u", password="p")
    with pytest.raises(ConfigurationError, match="both a username and a password"):
        InfluxDBClient("http://influx:8086", database="d", username="u")


def test_from_settings() -> None:
    unset = Settings(influxdb_url=None)
    with pytest.raises(ConfigurationError, match="INFLUXDB_URL"):
        InfluxDBClient.from_settings(unset)
    settings = Settings(
        influxdb_url="http://influx:8086/",
        influxdb_token=SecretStr("tok"),
        influxdb_username=None,
        influxdb_password=None,
        influxdb_org="acme",
        influxdb_bucket="candles",
    )
    with InfluxDBClient.from_settings(settings, batch_size=10) as client:
        assert client.url == "http://influx:8086"
        assert client.database == "candles"
        assert client.org == "acme"
        assert client.batch_size == 10
        assert client.session.headers["Authorization"] == "Token tok"


@integration
def test_a_missing_database_is_a_clear_error_and_never_created_by_a_write(influxdb_client: InfluxDBClient) -> None:
    """A typo in INFLUXDB_BUCKET must fail, not fill a new database: creating one is an explicit step."""
    influxdb_client.drop_database()
    with pytest.raises(InfluxDBDatabaseNotFoundError) as write:
        influxdb_client.write_lines(["probe,tag=a value=1 1000000000"])
    with pytest.raises(InfluxDBDatabaseNotFoundError) as query:
        influxdb_client.query('SELECT "value" FROM "probe"')
    for caught in (write, query):
        message = str(caught.value)
        assert repr(INFLUXDB_TEST_DB) in message
        assert INFLUXDB_TEST_URL in message
        assert "marketkeeper db upgrade" in message
        assert "\n" not in message
        assert isinstance(caught.value, ConfigurationError)
        assert caught.value.database == INFLUXDB_TEST_DB
    assert write.value.status == 404
    assert query.value.status is None  # 1.x reports it inside a 200 answer
    assert influxdb_client.database_exists() is False


@integration
def test_create_database_is_idempotent_and_keeps_the_data(influxdb_client: InfluxDBClient) -> None:
    influxdb_client.drop_database()

    assert influxdb_client.create_database() is True
    influxdb_client.write_lines(["probe,tag=a value=1 1000000000"])
    assert influxdb_client.create_database() is False

    assert influxdb_client.database_exists() is True
    assert influxdb_client.query('SELECT "value" FROM "probe"')[0].values == [[1000000000, 1.0]]


@integration
def test_another_missing_database_named_in_a_statement_is_an_influxql_error(influxdb_client: InfluxDBClient) -> None:
    with pytest.raises(InfluxQLError, match="database not found") as caught:
        influxdb_client.query(f"SHOW TAG KEYS ON {quote_identifier(INFLUXDB_TEST_DB + '_other')}")
    assert not isinstance(caught.value, InfluxDBDatabaseNotFoundError)
