"""Timeframes parse ccxt's spellings only and align, count and step candles exactly, months and weeks included."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from marketkeeper.errors import MarketkeeperError
from marketkeeper.timeframes import (
    EPOCH,
    SUPPORTED_SPAN,
    TIMEFRAMES,
    InvalidRangeError,
    NaiveDatetimeError,
    Timeframe,
    TimeframeError,
    check_range,
    to_ms,
    to_ns,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def test_parses_every_ccxt_spelling_and_round_trips() -> None:
    for spelling in TIMEFRAMES:
        tf = Timeframe.parse(spelling)
        assert str(tf) == spelling
        assert Timeframe.parse(tf) is tf
    assert Timeframe.parse("1M") != Timeframe.parse("1m")


@pytest.mark.parametrize("bad", ["1s", "2m", "1H", "1mo", "60", "", " 1m", "1y", "3d"])
def test_rejects_unknown_spellings_naming_value_and_valid_ones(bad: str) -> None:
    with pytest.raises(ValueError, match="valid timeframes are 1m, 3m") as info:
        Timeframe.parse(bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, MarketkeeperError)


def test_rejects_non_strings() -> None:
    with pytest.raises(TimeframeError):
        Timeframe.parse(60)  # type: ignore[arg-type]


def test_fixed_lengths() -> None:
    assert Timeframe.parse("1m").milliseconds == 60_000
    assert Timeframe.parse("4h").milliseconds == 4 * 3_600_000
    assert Timeframe.parse("1d").milliseconds == 86_400_000
    assert Timeframe.parse("1w").milliseconds == 7 * 86_400_000
    assert Timeframe.parse("15m").duration == timedelta(minutes=15)
    assert not Timeframe.parse("1M").is_fixed
    with pytest.raises(TimeframeError, match="1M has no fixed length"):
        _ = Timeframe.parse("1M").milliseconds


@pytest.mark.parametrize(
    ("tf", "dt", "expected"),
    [
        ("1m", utc(2024, 3, 5, 10, 7, 59, 999999), utc(2024, 3, 5, 10, 7)),
        ("15m", utc(2024, 3, 5, 10, 44, 1), utc(2024, 3, 5, 10, 30)),
        ("4h", utc(2024, 3, 5, 23, 59), utc(2024, 3, 5, 20)),
        ("12h", utc(2024, 3, 5, 11, 59), utc(2024, 3, 5)),
        ("1d", utc(2024, 3, 5, 23, 59), utc(2024, 3, 5)),
        # 2024-01-01 was a Monday; the epoch (a Thursday) must not be the week's start.
        ("1w", utc(2024, 1, 7, 23, 59), utc(2024, 1, 1)),
        ("1w", utc(2024, 1, 8), utc(2024, 1, 8)),
        ("1w", utc(2024, 2, 29, 12), utc(2024, 2, 26)),
        ("1w", utc(1970, 1, 1), utc(1969, 12, 29)),
        ("1M", utc(2024, 2, 29, 23, 59), utc(2024, 2, 1)),
        ("1M", utc(2023, 12, 31, 23, 59, 59), utc(2023, 12, 1)),
    ],
)
def test_floor_is_the_bucket_open_time(tf: str, dt: datetime, expected: datetime) -> None:
    assert Timeframe.parse(tf).floor(dt) == expected


def test_week_opens_on_monday() -> None:
    week = Timeframe.parse("1w")
    for day in range(60):
        opened = week.floor(utc(2023, 11, 1) + timedelta(days=day, hours=13))
        assert opened.weekday() == 0
        assert (opened.hour, opened.minute) == (0, 0)


def test_other_timezones_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert Timeframe.parse("1d").floor(datetime(2024, 3, 6, 1, 0, tzinfo=plus_two)) == utc(2024, 3, 5)
    assert Timeframe.parse("1h").floor(pd.Timestamp("2024-03-05 10:30", tz="UTC")) == utc(2024, 3, 5, 10)


def test_naive_datetimes_are_refused() -> None:
    tf = Timeframe.parse("1h")
    with pytest.raises(NaiveDatetimeError, match="no timezone"):
        tf.floor(datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(NaiveDatetimeError):
        tf.count(datetime(2024, 1, 1), utc(2024, 1, 2))  # noqa: DTZ001


def test_month_steps_are_calendar_correct() -> None:
    month = Timeframe.parse("1M")
    assert month.next_open(utc(2023, 12, 1)) == utc(2024, 1, 1)
    assert month.next_open(utc(2024, 1, 31, 23)) == utc(2024, 2, 1)
    assert month.next_open(utc(2024, 2, 1)) == utc(2024, 3, 1)
    assert month.add(utc(2024, 1, 1), -1) == utc(2023, 12, 1)
    assert month.add(utc(2024, 1, 1), 14) == utc(2025, 3, 1)
    assert month.range(utc(2023, 11, 15), utc(2024, 3, 1)) == [utc(2023, 12, 1), utc(2024, 1, 1), utc(2024, 2, 1)]
    assert month.count(utc(2023, 11, 15), utc(2024, 3, 1)) == 3
    # Leap February: 29 days of 1d candles, then March.
    day = Timeframe.parse("1d")
    feb = utc(2024, 2, 1)
    assert day.count(feb, month.next_open(feb)) == 29
    assert day.count(utc(2023, 2, 1), month.next_open(utc(2023, 2, 1))) == 28


def test_add_and_next_open_on_fixed_timeframes() -> None:
    hour = Timeframe.parse("1h")
    assert hour.next_open(utc(2024, 1, 1, 10, 30)) == utc(2024, 1, 1, 11)
    assert hour.add(utc(2024, 1, 1, 10), 3) == utc(2024, 1, 1, 13)
    assert hour.add(utc(2024, 1, 1, 10), -11) == utc(2023, 12, 31, 23)
    assert Timeframe.parse("1w").next_open(utc(2024, 1, 3)) == utc(2024, 1, 8)


def test_is_aligned() -> None:
    assert Timeframe.parse("5m").is_aligned(utc(2024, 1, 1, 0, 55))
    assert not Timeframe.parse("5m").is_aligned(utc(2024, 1, 1, 0, 56))
    assert not Timeframe.parse("1m").is_aligned(utc(2024, 1, 1, 0, 55, 0, 1))
    assert Timeframe.parse("1w").is_aligned(utc(2024, 1, 1))
    assert not Timeframe.parse("1w").is_aligned(utc(2024, 1, 4))
    assert Timeframe.parse("1M").is_aligned(utc(2024, 2, 1))
    assert not Timeframe.parse("1M").is_aligned(utc(2024, 2, 2))


def test_range_is_half_open_and_count_agrees() -> None:
    m5 = Timeframe.parse("5m")
    opens = m5.range(utc(2024, 1, 1, 0, 3), utc(2024, 1, 1, 0, 20))
    assert opens == [utc(2024, 1, 1, 0, 5), utc(2024, 1, 1, 0, 10), utc(2024, 1, 1, 0, 15)]
    assert m5.count(utc(2024, 1, 1, 0, 3), utc(2024, 1, 1, 0, 20)) == 3
    assert m5.count(utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 20, 1)) == 5
    assert m5.range(utc(2024, 1, 1), utc(2024, 1, 1)) == []
    assert m5.count(utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2)) == 0
    assert Timeframe.parse("1m").count(utc(2024, 1, 1), utc(2024, 1, 2)) == 1440
    assert Timeframe.parse("1m").count(utc(2024, 1, 1), utc(2025, 1, 1)) == 366 * 1440
    week = Timeframe.parse("1w")
    assert week.range(utc(2024, 1, 2), utc(2024, 1, 23)) == [utc(2024, 1, 8), utc(2024, 1, 15), utc(2024, 1, 22)]
    for spelling in TIMEFRAMES:
        tf = Timeframe.parse(spelling)
        start, end = utc(2023, 11, 20, 7, 13), utc(2024, 3, 2, 5)
        assert len(tf.range(start, end)) == tf.count(start, end)
        ns = tf.range_ns(start, end)
        assert [pd.Timestamp(int(t), tz="UTC").to_pydatetime() for t in ns] == tf.range(start, end)


def test_start_after_end_is_refused() -> None:
    with pytest.raises(InvalidRangeError, match="after end"):
        Timeframe.parse("1m").count(utc(2024, 1, 2), utc(2024, 1, 1))
    with pytest.raises(InvalidRangeError):
        Timeframe.parse("1m").range(utc(2024, 1, 2), utc(2024, 1, 1))


@pytest.mark.parametrize(
    ("start", "end", "name", "value"),
    [
        (utc(1500, 1, 1), utc(2024, 1, 1), "start", "1500-01-01T00:00:00+00:00"),
        (utc(1969, 12, 31, 23, 59, 59, 999999), utc(2024, 1, 1), "start", "1969-12-31T23:59:59.999999+00:00"),
        (utc(2024, 1, 1), utc(2262, 1, 1, 0, 0, 0, 1), "end", "2262-01-01T00:00:00.000001+00:00"),
        (utc(2300, 1, 1), utc(2400, 1, 1), "start", "2300-01-01T00:00:00+00:00"),
        (utc(1, 1, 1), utc(9999, 12, 31), "start", "0001-01-01T00:00:00+00:00"),
    ],
)
def test_times_outside_the_supported_span_are_refused_naming_value_and_span(
    start: datetime, end: datetime, name: str, value: str
) -> None:
    span = "1970-01-01T00:00:00+00:00 .. 2262-01-01T00:00:00+00:00"
    expected = re.escape(f"{name} {value} is outside the supported span {span}")
    with pytest.raises(InvalidRangeError, match=f"^{expected}") as info:
        check_range(start, end)
    assert isinstance(info.value, MarketkeeperError) and "\n" not in str(info.value)
    with pytest.raises(InvalidRangeError, match="outside the supported span"):
        Timeframe.parse("1d").count(start, end)


def test_the_supported_span_itself_is_accepted() -> None:
    assert (EPOCH, utc(2262, 1, 1)) == SUPPORTED_SPAN
    assert check_range(*SUPPORTED_SPAN) == SUPPORTED_SPAN
    assert check_range(EPOCH, EPOCH) == (EPOCH, EPOCH)
    assert Timeframe.parse("1d").count(*SUPPORTED_SPAN) == (SUPPORTED_SPAN[1] - EPOCH).days


def test_to_ns_is_exact_integer_arithmetic() -> None:
    assert to_ns(EPOCH) == 0
    moment = utc(2024, 1, 1, 0, 0, 0, 123457)
    assert to_ns(moment) == 1_704_067_200_123_457_000
    assert int(moment.timestamp() * 1e9) == 1_704_067_200_123_457_024  # what a float converter gets wrong
    assert to_ns(utc(1969, 12, 31, 23, 59, 59, 999999)) == -1000
    assert to_ns(datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == to_ns(utc(2024, 1, 1))
    assert to_ns(pd.Timestamp("2024-01-01 00:00:00.000000007", tz="UTC")) == 1_704_067_200_000_000_007
    rng = np.random.default_rng(3)
    for us in rng.integers(-(10**15), 9 * 10**15, size=200):
        stamp = EPOCH + timedelta(microseconds=int(us))
        assert to_ns(stamp) == pd.Timestamp(stamp).as_unit("ns").value == int(us) * 1000
    assert to_ms(moment) == 1_704_067_200_123


def test_to_ns_refuses_naive_and_unrepresentable_times() -> None:
    with pytest.raises(NaiveDatetimeError, match="no timezone"):
        to_ns(datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(InvalidRangeError, match="int64 nanoseconds"):
        to_ns(utc(1500, 1, 1))
    with pytest.raises(InvalidRangeError, match="int64 nanoseconds"):
        to_ns(utc(2262, 4, 12))


@pytest.mark.parametrize(
    ("tf", "now", "expected"),
    [
        ("1m", utc(2024, 1, 1, 10, 5, 30), utc(2024, 1, 1, 10, 4)),
        # Exactly on a boundary: the candle opening now has not closed; the one before just did.
        ("1m", utc(2024, 1, 1, 10, 5), utc(2024, 1, 1, 10, 4)),
        ("1h", utc(2024, 1, 1, 0, 0, 1), utc(2023, 12, 31, 23)),
        ("1d", utc(2024, 3, 1, 12), utc(2024, 2, 29)),
        ("1w", utc(2024, 1, 10), utc(2024, 1, 1)),
        ("1M", utc(2024, 1, 15), utc(2023, 12, 1)),
        ("1M", utc(2024, 3, 1), utc(2024, 2, 1)),
    ],
)
def test_last_closed_open(tf: str, now: datetime, expected: datetime) -> None:
    timeframe = Timeframe.parse(tf)
    assert timeframe.last_closed_open(now) == expected
    assert timeframe.is_closed(expected, now)
    assert not timeframe.is_closed(timeframe.next_open(expected), now)


@pytest.mark.parametrize("spelling", TIMEFRAMES)
def test_vectorized_agrees_with_scalar(spelling: str) -> None:
    tf = Timeframe.parse(spelling)
    rng = np.random.default_rng(7)
    # Random instants from 1965 to 2035 (negative epochs included), plus exact boundaries.
    seconds = rng.integers(-5 * 365 * 86400, 65 * 365 * 86400, size=400)
    instants = [
        utc(1970, 1, 1) + timedelta(seconds=int(s), microseconds=int(u))
        for s, u in zip(seconds, rng.integers(0, 1_000_000, size=400), strict=True)
    ]
    instants += [tf.floor(t) for t in instants[:100]]
    ns = np.array([to_ns(t) for t in instants], dtype=np.int64)
    floored = tf.floor_ns(ns)
    expected = np.array([to_ns(tf.floor(t)) for t in instants], dtype=np.int64)
    np.testing.assert_array_equal(floored, expected)
    np.testing.assert_array_equal(tf.is_aligned_ns(ns), [tf.is_aligned(t) for t in instants])


def test_vectorized_accepts_a_dataframe_column_and_keeps_nat() -> None:
    column = pd.Series(pd.to_datetime(["2024-02-29 13:00", "2024-03-04 00:00", None], utc=True))
    ns = column.dt.as_unit("ns").array.asi8
    week = Timeframe.parse("1w")
    floored = week.floor_ns(ns)
    assert pd.Timestamp(int(floored[0]), tz="UTC") == pd.Timestamp("2024-02-26", tz="UTC")
    assert floored[2] == np.iinfo(np.int64).min
    assert week.is_aligned_ns(ns).tolist() == [False, True, False]
