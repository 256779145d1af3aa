"""The candle quality gate without a server: every bad input of the issue lands in ``failed``, named."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey, normalize_frame
from marketkeeper.errors import MarketkeeperError
from marketkeeper.quality import (
    PARSEABLE_ROW,
    GateResult,
    QualityGateError,
    check_candles,
    enforce_threshold,
)
from marketkeeper.sources.base import Reject, rejects_frame
from marketkeeper.timeframes import NaiveDatetimeError

KEY = SeriesKey.of("binance", "BTC/USDT", "1m")
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 2, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
UNIQUE = "expect_column_values_to_be_unique(open_time)"
ALIGNED = "expect_column_values_to_be_in_set(open_time_aligned)"
CLOSED = "expect_column_values_to_be_between(open_time)"


def candles(n: int = 10, start: datetime = START, freq: str = "1min") -> pd.DataFrame:
    """``n`` plausible candles, one per ``freq``, from ``start``."""
    base = 100.0 + np.arange(n) * 0.25
    return pd.DataFrame(
        {
            "open_time": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
            "open": base,
            "high": base + 2.0,
            "low": base - 2.0,
            "close": base + 1.0,
            "volume": np.full(n, 5.5),
        }
    )


def expectations_of(result: GateResult, row: int = 0) -> list[str]:
    return str(result.failed["failed_expectation"].iloc[row]).split("; ")


def assert_counts_add_up(result: GateResult, rows_in: int) -> None:
    assert result.rows_checked == rows_in
    assert len(result.passed) + len(result.failed) + result.rows_skipped == rows_in
    assert result.rows_failed == len(result.failed)
    assert result.rows_skipped == len(result.skipped)


def test_a_clean_batch_passes_whole() -> None:
    frame = candles(1440)

    result = check_candles(KEY, frame, now=NOW)

    assert result.success
    assert result.failed.empty
    pd.testing.assert_frame_equal(result.passed, normalize_frame(frame))
    assert all(outcome.success and outcome.unexpected_count == 0 for outcome in result.results)
    assert_counts_add_up(result, 1440)
    assert result.summary["success"] is True


def test_the_suite_covers_every_rule_of_the_issue() -> None:
    names = {outcome.name for outcome in check_candles(KEY, candles(), now=NOW).results}

    for column in ("open_time", "open", "high", "low", "close", "volume"):
        assert f"{NOT_NULL}({column})" in names
    for column in ("open", "high", "low", "close", "volume"):
        assert f"{BETWEEN}({column})" in names
    for pair in ("high, open", "high, close", "open, low", "close, low"):
        assert f"{PAIR}({pair})" in names
    assert {UNIQUE, ALIGNED, CLOSED, PARSEABLE_ROW} <= names


def _set(column: str, value: float, **more: float) -> Callable[[pd.DataFrame], None]:
    """Set values of row 3 (open 100.75, high 102.75, low 98.75, close 101.75)."""

    def mutate(frame: pd.DataFrame) -> None:
        for name, number in {column: value, **more}.items():
            frame.loc[3, name] = number

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(_set("close", np.nan), [f"{NOT_NULL}(close)"], id="nan-price"),
        pytest.param(_set("open", np.inf), [f"{BETWEEN}(open)", f"{PAIR}(high, open)"], id="inf-price"),
        pytest.param(_set("low", -1.0), [f"{BETWEEN}(low)"], id="negative-price"),
        pytest.param(_set("open", 0.0), [f"{BETWEEN}(open)", f"{PAIR}(open, low)"], id="zero-price"),
        pytest.param(_set("volume", -0.5), [f"{BETWEEN}(volume)"], id="negative-volume"),
        pytest.param(_set("volume", np.nan), [f"{NOT_NULL}(volume)"], id="null-volume"),
        pytest.param(_set("high", 100.5), [f"{PAIR}(high, open)", f"{PAIR}(high, close)"], id="high-below-open"),
        pytest.param(_set("low", 101.0), [f"{PAIR}(open, low)"], id="low-above-open"),
        pytest.param(_set("low", 98.5, close=98.0), [f"{PAIR}(close, low)"], id="low-above-close"),
        pytest.param(
            _set("low", 200.0),
            [f"{PAIR}(open, low)", f"{PAIR}(close, low)", f"{PAIR}(high, low)"],
            id="high-below-low",
        ),
    ],
)
def test_a_bad_value_fails_its_expectation(mutate: Callable[[pd.DataFrame], None], expected: list[str]) -> None:
    frame = candles()
    mutate(frame)

    result = check_candles(KEY, frame, now=NOW)

    assert not result.success
    assert len(result.failed) == 1
    assert expectations_of(result) == expected
    assert result.failed["open_time"].iloc[0] == frame["open_time"].iloc[3]
    assert len(result.passed) == 9
    assert_counts_add_up(result, 10)


def test_failed_rows_keep_the_values_as_received() -> None:
    frame = candles()
    frame.loc[2, "close"] = np.nan
    frame.loc[5, "volume"] = -3.25
    frame.loc[7, "open"] = np.inf

    failed = check_candles(KEY, frame, now=NOW).failed

    by_time = failed.set_index("open_time")
    assert np.isnan(by_time.loc[frame["open_time"][2], "close"])
    assert by_time.loc[frame["open_time"][5], "volume"] == -3.25
    assert by_time.loc[frame["open_time"][7], "open"] == np.inf
    assert by_time.loc[frame["open_time"][5], "high"] == frame["high"][5]


def test_a_row_breaking_several_expectations_lists_them_all_with_reasons() -> None:
    frame = candles()
    frame.loc[4, "volume"] = -1.0
    frame.loc[4, "high"] = 1.0

    result = check_candles(KEY, frame, now=NOW)

    assert expectations_of(result) == [
        f"{BETWEEN}(volume)",
        f"{PAIR}(high, open)",
        f"{PAIR}(high, close)",
        f"{PAIR}(high, low)",
    ]
    reasons = str(result.failed["reason"].iloc[0]).split("; ")
    assert len(reasons) == 4
    assert reasons[0] == "volume -1.0 is not a non-negative finite number below 1e20"
    assert reasons[1] == "high 1.0 is below open 101.0"
    assert result.failure_counts[f"{PAIR}(high, open)"] == 1


def test_identical_duplicates_keep_one_copy_and_are_counted_as_skipped() -> None:
    frame = candles()
    doubled = pd.concat([frame, frame.iloc[[2, 2, 6]]], ignore_index=True)

    result = check_candles(KEY, doubled, now=NOW)

    assert result.success
    assert result.failed.empty
    assert result.rows_skipped == 3
    pd.testing.assert_frame_equal(result.passed, normalize_frame(frame))
    assert_counts_add_up(result, 13)


def test_conflicting_duplicates_quarantine_every_copy() -> None:
    frame = candles()
    other = frame.iloc[[4]].assign(close=101.5)
    conflicting = pd.concat([frame, other], ignore_index=True)

    result = check_candles(KEY, conflicting, now=NOW)

    assert len(result.failed) == 2
    assert set(result.failed["failed_expectation"]) == {UNIQUE}
    assert set(result.failed["close"]) == {frame["close"][4], 101.5}
    assert "appears 2 times with different values" in str(result.failed["reason"].iloc[0])
    assert frame["open_time"][4] not in set(result.passed["open_time"])
    assert_counts_add_up(result, 11)


def test_a_misaligned_open_time_fails_alignment() -> None:
    frame = candles()
    frame.loc[6, "open_time"] += pd.Timedelta(seconds=30)

    result = check_candles(KEY, frame, now=NOW)

    assert expectations_of(result) == [ALIGNED]
    assert "not a 1m open time" in str(result.failed["reason"].iloc[0])


def test_weekly_candles_must_open_on_monday() -> None:
    key = SeriesKey.of("binance", "BTC/USDT", "1w")
    mondays = candles(4, start=datetime(2024, 1, 1, tzinfo=UTC), freq="7D")  # 2024-01-01 is a Monday
    sunday = mondays.iloc[[0]].assign(open_time=pd.Timestamp("2024-02-04", tz="UTC"))

    result = check_candles(key, pd.concat([mondays, sunday], ignore_index=True), now=NOW)

    assert len(result.passed) == 4
    assert expectations_of(result) == [ALIGNED]
    assert result.failed["open_time"].iloc[0] == pd.Timestamp("2024-02-04", tz="UTC")
    assert "Monday" in str(result.failed["reason"].iloc[0])


def test_monthly_candles_must_open_on_the_first() -> None:
    key = SeriesKey.of("binance", "BTC/USDT", "1M")
    firsts = candles(3, start=datetime(2024, 1, 1, tzinfo=UTC), freq="MS")
    second = firsts.iloc[[0]].assign(open_time=pd.Timestamp("2024-05-02", tz="UTC"))
    thirty_days = firsts.iloc[[0]].assign(open_time=pd.Timestamp("2024-01-31", tz="UTC"))

    result = check_candles(key, pd.concat([firsts, second, thirty_days], ignore_index=True), now=NOW)

    assert len(result.passed) == 3
    assert list(result.failed["failed_expectation"]) == [ALIGNED, ALIGNED]
    assert "1st" in str(result.failed["reason"].iloc[0])


def test_a_candle_not_closed_at_now_is_in_the_future() -> None:
    frame = candles()
    last_open = frame["open_time"].iloc[-1].to_pydatetime()

    # At the last candle's close time every candle has closed ...
    assert check_candles(KEY, frame, now=last_open + timedelta(minutes=1)).success
    # ... half a minute earlier the last one is still open.
    result = check_candles(KEY, frame, now=last_open + timedelta(seconds=30))

    assert expectations_of(result) == [CLOSED]
    assert result.failed["open_time"].iloc[0] == frame["open_time"].iloc[-1]
    assert "has not closed" in str(result.failed["reason"].iloc[0])


def test_the_current_month_is_not_closed_yet() -> None:
    key = SeriesKey.of("binance", "BTC/USDT", "1M")
    frame = candles(3, start=datetime(2024, 11, 1, tzinfo=UTC), freq="MS")

    result = check_candles(key, frame, now=datetime(2025, 1, 31, 23, tzinfo=UTC))

    assert list(result.failed["open_time"]) == [pd.Timestamp("2025-01-01", tz="UTC")]
    assert expectations_of(result) == [CLOSED]


def test_a_missing_open_time_fails_only_the_null_check() -> None:
    frame = candles()
    frame["open_time"] = frame["open_time"].astype(object)
    frame.loc[8, "open_time"] = None
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)

    result = check_candles(KEY, frame, now=NOW)

    assert expectations_of(result) == [f"{NOT_NULL}(open_time)"]
    assert pd.isna(result.failed["open_time"].iloc[0])


def test_rejected_source_rows_fail_parseable_row() -> None:
    rejects = rejects_frame(
        [
            Reject(source="files", reason="11 columns, expected 12", raw="1704067200000,1,2", file="a.csv", line=7),
            Reject(source="files", reason="open is not a number", raw="x,y", open_time=START),
        ]
    )

    result = check_candles(KEY, candles(), now=NOW, rejects=rejects)

    assert not result.success
    assert list(result.failed["failed_expectation"]) == [PARSEABLE_ROW, PARSEABLE_ROW]
    assert list(result.failed["raw"]) == ["1704067200000,1,2", "x,y"]
    assert list(result.failed["reason"]) == ["11 columns, expected 12", "open is not a number"]
    assert result.failed["line"].iloc[0] == 7
    assert pd.isna(result.failed["open_time"].iloc[0])
    assert result.failed["open_time"].iloc[1] == pd.Timestamp(START)
    assert result.failure_counts == {PARSEABLE_ROW: 2}
    assert len(result.passed) == 10
    assert_counts_add_up(result, 12)


def test_counts_add_up_on_a_batch_with_everything_wrong() -> None:
    frame = candles(50)
    frame.loc[1, "open"] = np.nan
    frame.loc[2, "volume"] = -1.0
    frame.loc[3, "open_time"] += pd.Timedelta(seconds=1)
    frame = pd.concat([frame, frame.iloc[[10, 11]], frame.iloc[[12]].assign(volume=9.0)], ignore_index=True)
    rejects = rejects_frame([Reject(source="files", reason="bad", raw="?")])

    result = check_candles(KEY, frame.sample(frac=1.0, random_state=3), now=NOW, rejects=rejects)

    assert_counts_add_up(result, 54)
    assert result.rows_skipped == 2
    assert result.rows_failed == 6  # NaN, negative volume, misaligned, two conflicting copies, the reject
    assert result.passed["open_time"].is_monotonic_increasing
    assert result.failed_fraction == pytest.approx(6 / 54)


def test_an_empty_batch_passes() -> None:
    result = check_candles(KEY, candles(0), now=NOW)

    assert result.success
    assert result.rows_checked == 0
    assert result.failed_fraction == 0.0
    enforce_threshold(result, KEY, START, END, 0.0)


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(NaiveDatetimeError):
        check_candles(KEY, candles(), now=datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test


def test_threshold_error_names_market_range_and_expectations() -> None:
    frame = candles(100)
    frame.loc[[1, 2], "volume"] = -1.0
    frame.loc[5, "close"] = np.nan
    result = check_candles(KEY, frame, now=NOW, max_failed_fraction=0.01)

    with pytest.raises(QualityGateError) as caught:
        enforce_threshold(result, KEY, START, END)

    message = str(caught.value)
    assert isinstance(caught.value, MarketkeeperError)
    assert "binance:BTC/USDT:1m" in message
    assert "[2024-01-01T00:00:00+00:00, 2024-01-02T00:00:00+00:00)" in message
    assert f"{BETWEEN}(volume) x2" in message
    assert f"{NOT_NULL}(close) x1" in message
    assert "3 of 100 rows" in message
    assert caught.value.failures == {f"{BETWEEN}(volume)": 2, f"{NOT_NULL}(close)": 1}


def test_a_failed_fraction_at_the_threshold_does_not_raise() -> None:
    frame = candles(100)
    frame.loc[1, "volume"] = -1.0
    result = check_candles(KEY, frame, now=NOW, max_failed_fraction=0.01)

    assert result.failed_fraction == result.max_failed_fraction
    enforce_threshold(result, KEY, START, END)
    with pytest.raises(QualityGateError):
        enforce_threshold(result, KEY, START, END, 0.0)


def test_the_threshold_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="max_failed_fraction"):
        check_candles(KEY, candles(), now=NOW, max_failed_fraction=5)


def test_the_summary_is_strict_json() -> None:
    frame = candles()
    frame.loc[1, "open"] = np.inf
    frame.loc[2, "close"] = np.nan

    summary = check_candles(KEY, frame, now=NOW).summary

    text = json.dumps(summary, allow_nan=False)
    assert '"Infinity"' in text
    assert summary["statistics"]["unsuccessful_expectations"] >= 2


def test_the_process_keeps_no_validation_results_between_batches() -> None:
    from marketkeeper.quality import gx

    for _ in range(3):
        check_candles(KEY, candles(), now=NOW)

    context, _checkpoint = gx.checkpoint()
    assert context.validation_results_store.list_keys() == []


def with_optional(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with plausible quote volumes and trade counts (trade counts as objects, to hold 1.5)."""
    n = len(frame)
    return frame.assign(quote_volume=np.full(n, 550.0), trade_count=pd.Series(range(1, n + 1), dtype=object))


@pytest.mark.parametrize(
    ("column", "value", "expected", "reason"),
    [
        pytest.param(
            "quote_volume",
            np.inf,
            f"{BETWEEN}(quote_volume)",
            "quote_volume inf is not a non-negative finite number below 1e20",
            id="inf-quote-volume",
        ),
        pytest.param("quote_volume", -0.5, f"{BETWEEN}(quote_volume)", "quote_volume -0.5 is", id="negative-quote"),
        pytest.param("quote_volume", 1e20, f"{BETWEEN}(quote_volume)", "below 1e20", id="huge-quote-volume"),
        pytest.param(
            "trade_count",
            1.5,
            "expect_column_values_to_be_in_set(trade_count_integral)",
            "trade_count 1.5 is not a whole number",
            id="fractional-count",
        ),
        pytest.param(
            "trade_count",
            1e30,
            f"{BETWEEN}(trade_count)",
            "trade_count 1e+30 is not a non-negative count below 2**63",
            id="huge-count",
        ),
        pytest.param("trade_count", np.inf, f"{BETWEEN}(trade_count)", "trade_count inf is not", id="inf-count"),
        pytest.param("trade_count", -3, f"{BETWEEN}(trade_count)", "trade_count -3 is not", id="negative-count"),
    ],
)
def test_optional_columns_go_through_the_gate_row_by_row(column: str, value: float, expected: str, reason: str) -> None:
    frame = with_optional(candles())
    frame.loc[3, column] = value

    result = check_candles(KEY, frame, now=NOW)

    assert expectations_of(result) == [expected]
    assert reason in str(result.failed["reason"].iloc[0])
    assert result.failed["open_time"].iloc[0] == frame["open_time"].iloc[3]
    received = result.failed[column].iloc[0]
    assert received == value or (np.isinf(value) and np.isinf(received))
    assert len(result.passed) == 9
    assert result.passed["trade_count"].dtype == "Int64"
    assert_counts_add_up(result, 10)


def test_optional_columns_may_be_missing_entirely_or_per_row() -> None:
    frame = with_optional(candles())
    frame.loc[2, "quote_volume"] = np.nan
    frame.loc[4, "trade_count"] = None

    assert check_candles(KEY, frame, now=NOW).success
    result = check_candles(KEY, candles(), now=NOW)  # neither column
    assert result.success
    assert "trade_count" not in result.passed.columns and "quote_volume" not in result.passed.columns


def test_an_unholdable_trade_count_follows_its_row_through_the_sort() -> None:
    frame = with_optional(candles(30))
    frame.loc[[4, 17], "trade_count"] = [2.5, 1e30]
    frame.loc[9, "trade_count"] = None

    result = check_candles(KEY, frame.sample(frac=1.0, random_state=7), now=NOW)

    by_time = result.failed.set_index("open_time")["trade_count"]
    assert by_time[frame["open_time"][4]] == 2.5
    assert by_time[frame["open_time"][17]] == 1e30
    expected = normalize_frame(frame.drop(index=[4, 17]).astype({"trade_count": "float64"}))
    pd.testing.assert_frame_equal(result.passed, expected)
    assert_counts_add_up(result, 30)


def test_copies_differing_only_in_an_unholdable_trade_count_are_not_identical() -> None:
    frame = with_optional(candles())
    frame.loc[5, "trade_count"] = 1.5
    doubled = pd.concat([frame, frame.iloc[[5]].assign(trade_count=2.5)], ignore_index=True)

    result = check_candles(KEY, doubled, now=NOW)

    assert result.rows_skipped == 0
    assert sorted(result.failed["trade_count"]) == [1.5, 2.5]
    assert_counts_add_up(result, 11)


def test_an_integral_trade_count_of_float_dtype_passes_as_int64() -> None:
    frame = candles().assign(trade_count=np.arange(10, dtype=np.float64))

    result = check_candles(KEY, frame, now=NOW)

    assert result.success
    assert list(result.passed["trade_count"]) == list(range(10))
    assert result.passed["trade_count"].dtype == "Int64"
