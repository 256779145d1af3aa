"""Line protocol escaping and formatting: the exact text InfluxDB receives, no server needed."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from marketkeeper.influxdb import (
    escape_field_key,
    escape_measurement,
    escape_tag,
    format_field_value,
    format_line,
    format_lines,
)
from marketkeeper.influxdb.lineprotocol import float_texts


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("candles", "candles"),
        ("a,b c", r"a\,b\ c"),
        # The docs: only comma and space are special in a measurement.
        ("x=y\"z'", "x=y\"z'"),
        (r"back\slash", r"back\slash"),
        ("ü🚀", "ü🚀"),
        (" lead", r"\ lead"),
    ],
)
def test_escape_measurement(name: str, expected: str) -> None:
    assert escape_measurement(name) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC/USDT", "BTC/USDT"),
        ("a,b=c d", r"a\,b\=c\ d"),
        ("q\"uo'te", "q\"uo'te"),
        (r"\lead", r"\lead"),
        # InfluxDB 1.x unescapes only comma, equals and space in tags: other backslashes are literal.
        (r"two\\slashes", r"two\\slashes"),
        ("tab\there", "tab\there"),
    ],
)
def test_escape_tag(text: str, expected: str) -> None:
    assert escape_tag(text) == expected


def test_escape_tag_and_field_key_follow_the_docs() -> None:
    assert escape_tag("k,=  v") == r"k\,\=\ \ v"
    assert escape_field_key("open price,=x") == r"open\ price\,\=x"
    assert escape_field_key('say"hi"') == 'say"hi"'


@pytest.mark.parametrize("escape", [escape_measurement, escape_tag, escape_field_key])
@pytest.mark.parametrize("bad", ["", "line\nbreak", "trailing\\", "a\\ b", "a\\,b", "a\\=b", 'a\\"b'], ids=repr)
def test_names_that_cannot_round_trip_are_refused_by_name(escape: object, bad: str) -> None:
    assert callable(escape)
    with pytest.raises(ValueError) as info:
        escape(bad)
    if bad:
        assert repr(bad) in str(info.value)


def test_measurement_and_field_key_specific_refusals() -> None:
    with pytest.raises(ValueError, match="comment"):
        escape_measurement("#hash")
    with pytest.raises(ValueError, match="tab"):
        escape_measurement("\tstrip")
    with pytest.raises(ValueError, match="tab"):
        escape_field_key("\tstrip")
    with pytest.raises(ValueError, match="reserved"):
        escape_field_key("time")
    with pytest.raises(ValueError, match="reserved"):
        format_line("m", {"time": "x"}, {"f": 1.0})
    # Inside a name, these are ordinary characters.
    assert escape_measurement("a#b\tc") == "a#b\tc"
    assert escape_tag("time") == "time"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-2.5e-07, "-2.5e-7"),
        (1.5e-05, "0.000015"),
        (1e16, "1e+16"),
        (67432.123456789, "67432.123456789"),
        (42, "42i"),
        (-(2**63), "-9223372036854775808i"),
        (True, "true"),
        (False, "false"),
        ("plain", '"plain"'),
        ('say "hi" \\o/ \\', '"say \\"hi\\" \\\\o/ \\\\"'),
        ("multi\nline", '"multi\nline"'),
        ("", '""'),
        (Decimal("0.1"), "0.1"),
        (Decimal("67432.12345678"), "67432.12345678"),
        (Decimal("1.23456789012345678901"), "1.2345678901234567"),
        (Decimal("100"), "100.0"),
    ],
)
def test_format_field_value(value: object, expected: str) -> None:
    assert format_field_value(value, field="f") == expected  # type: ignore[arg-type]


AWKWARD = [5e-324, 1.7976931348623157e308, 0.1 + 0.2, 1.2345678901234567e-10, 1e16, 7.0, -0.0, -2.5e-300,
           1e-7, 1.5e-5, 123456789012345678.0, 1e21, 67432.123456789, 2.0**53 + 2, -1e-4]  # fmt: skip


def test_float_texts_are_format_field_value_of_each_and_read_back_bit_for_bit() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    values = np.concatenate([np.array(AWKWARD), rng.standard_normal(2000) * 10.0 ** rng.integers(-320, 300, 2000)])
    texts = float_texts(values)
    assert texts == [format_field_value(float(v), field="f") for v in values]
    assert np.array([float(t) for t in texts]).view(np.int64).tolist() == values.view(np.int64).tolist()
    assert float_texts(np.array([])) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("-Infinity")], ids=repr)
def test_non_finite_values_are_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match="'close'"):
        format_field_value(bad, field="close")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'close'"):
        format_line("candles", {}, {"close": bad})  # type: ignore[dict-item]


def test_int_outside_int64_and_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError, match="int64"):
        format_field_value(2**63, field="volume")
    with pytest.raises(TypeError, match="'when'"):
        format_field_value(object(), field="when")  # type: ignore[arg-type]


def test_format_line_sorts_tags_omits_empty_values_and_none_fields() -> None:
    line = format_line(
        "candles",
        {"symbol": "BTC/USDT", "exchange": "binance", "note": "", "timeframe": "1m"},
        {"open": 1.5, "volume": 10, "closed": True, "skip": None, "label": "a b"},
        1_700_000_000_000_000_000,
    )
    assert line == (
        "candles,exchange=binance,symbol=BTC/USDT,timeframe=1m "
        'open=1.5,volume=10i,closed=true,label="a b" 1700000000000000000'
    )


def test_format_line_escapes_every_part() -> None:
    line = format_line("my candles", {"a key": "v,1", "b=k": 'x"y'}, {"f k": 'q"\\'}, None)
    assert line == r'my\ candles,a\ key=v\,1,b\=k=x"y f\ k="q\"\\"'


def test_format_line_without_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        format_line("candles", {"symbol": "BTC"}, {})
    with pytest.raises(ValueError, match="at least one field"):
        format_line("candles", {}, {"close": None})


def test_format_line_time_must_be_an_int_in_range() -> None:
    with pytest.raises(TypeError):
        format_line("m", {}, {"f": 1.0}, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="range"):
        format_line("m", {}, {"f": 1.0}, 2**63)


def test_format_lines_matches_format_line_row_by_row() -> None:
    times = [1, 2, 3]
    symbols = ["BTC/USDT", "ETH USDT", None]
    opens = [1.0, None, 3.25]
    volumes = [Decimal("1.5"), Decimal("2"), Decimal("0.000001")]
    lines = format_lines(
        "candles",
        tags={"symbol": symbols},
        constant_tags={"exchange": "binance", "zone": ""},
        fields={"open": opens, "volume": volumes},
        times_ns=times,
    )
    expected = [
        format_line(
            "candles",
            {"symbol": symbols[i] or "", "exchange": "binance"},
            {"open": opens[i], "volume": volumes[i]},
            times[i],
        )
        for i in range(3)
    ]
    assert lines == expected
    assert lines[1] == r"candles,exchange=binance,symbol=ETH\ USDT volume=2.0 2"


def test_format_lines_checks_columns() -> None:
    with pytest.raises(ValueError, match="lengths"):
        format_lines("m", fields={"a": [1.0, 2.0]}, times_ns=[1])
    with pytest.raises(ValueError, match="row 1"):
        format_lines("m", fields={"a": [1.0, None]})
    with pytest.raises(ValueError, match="both"):
        format_lines("m", fields={"a": [1.0]}, tags={"t": ["x"]}, constant_tags={"t": "y"})
    with pytest.raises(ValueError, match="'a'"):
        format_lines("m", fields={"a": [1.0, math.nan]})
    assert format_lines("m", fields={"a": []}) == []
