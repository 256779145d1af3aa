"""InfluxQL quoting: the exact text of identifiers, literals and times, no server needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from marketkeeper.influxdb import format_time, quote_identifier, quote_string


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("candles", '"candles"'),
        ("my db", '"my db"'),
        ('say "hi"', r'"say \"hi\""'),
        ("it's", '"it\'s"'),
        ("back\\slash\\", r'"back\\slash\\"'),
        ("line\nbreak", r'"line\nbreak"'),
        ("ü🚀", '"ü🚀"'),
        ('"; DROP DATABASE x; --', r'"\"; DROP DATABASE x; --"'),
    ],
)
def test_quote_identifier(name: str, expected: str) -> None:
    assert quote_identifier(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("BTC/USDT", "'BTC/USDT'"),
        ("it's", r"'it\'s'"),
        ('say "hi"', "'say \"hi\"'"),
        ("back\\slash\\", r"'back\\slash\\'"),
        ("line\nbreak", r"'line\nbreak'"),
        ("", "''"),
        ("' OR ''='", r"'\' OR \'\'=\''"),
    ],
)
def test_quote_string(value: str, expected: str) -> None:
    assert quote_string(value) == expected


def test_quoting_refuses_what_influxql_cannot_express() -> None:
    with pytest.raises(ValueError, match="empty"):
        quote_identifier("")
    with pytest.raises(ValueError, match="carriage return"):
        quote_identifier("a\rb")
    with pytest.raises(ValueError, match="carriage return"):
        quote_string("a\rb")
    with pytest.raises(TypeError):
        quote_string(1)  # type: ignore[arg-type]


def test_format_time_is_rfc3339_utc() -> None:
    assert format_time(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2024-01-02T03:04:05.000006Z"
    tokyo = timezone(timedelta(hours=9))
    assert format_time(datetime(2024, 1, 2, 9, 0, tzinfo=tokyo)) == "2024-01-02T00:00:00.000000Z"
    assert format_time(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"


def test_format_time_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2024, 1, 2))  # noqa: DTZ001
