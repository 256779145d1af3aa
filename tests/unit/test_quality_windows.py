"""Several series' windows through the gate in one Great Expectations run (:func:`check_windows`, what a batch
of markets uses): each window's result is what :func:`check_candles` gives it alone, bad rows named exactly."""

from __future__ import annotations

import pandas as pd
import pytest

from marketkeeper.candles import CandleFrameError, SeriesKey
from marketkeeper.quality import check_candles, check_windows
from tests.unit.test_quality_gate import NOW, PAIR, START, UNIQUE, candles

KEYS = [SeriesKey.of("binance", f"M{i}/USDT", "1m") for i in range(4)]


def same_result(a: object, b: object) -> None:
    for name in ("rows_checked", "rows_failed", "rows_skipped", "success", "failure_counts"):
        assert getattr(a, name) == getattr(b, name), name
    pd.testing.assert_frame_equal(a.passed, b.passed)  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(a.failed, b.failed)  # type: ignore[attr-defined]


def test_clean_windows_with_the_same_open_times_pass_in_one_run_as_each_would_alone() -> None:
    # Every series has the same open times: unique per series, not over the union.
    windows = [(key, candles(60), None) for key in KEYS]

    results = check_windows(windows, now=NOW)

    assert len(results) == len(KEYS)
    for (key, frame, _), result in zip(windows, results, strict=True):
        same_result(result, check_candles(key, frame, now=NOW))
        assert result.key == key
        assert result.summary["union"] == {"windows": 4, "rows": 240}


def test_a_bad_window_is_named_row_by_row_and_the_others_still_pass() -> None:
    bad = candles(60)
    bad.loc[5, "high"] = bad.loc[5, "low"] - 1.0  # high below low (and below open and close)
    duplicate = candles(60)
    duplicate = pd.concat([duplicate, duplicate.iloc[[2]].assign(close=duplicate.loc[2, "close"] + 0.5)])
    windows = [(KEYS[0], candles(60), None), (KEYS[1], bad, None), (KEYS[2], duplicate, None)]

    results = check_windows(windows, now=NOW)

    for (key, frame, _), result in zip(windows, results, strict=True):
        same_result(result, check_candles(key, frame, now=NOW))
    clean, high_low, dup = results
    assert clean.success  # type: ignore[union-attr]
    assert high_low.rows_failed == 1 and f"{PAIR}(high, low)" in high_low.failure_counts  # type: ignore[union-attr]
    assert dup.rows_failed == 2 and dup.failure_counts[UNIQUE] == 2  # type: ignore[union-attr]


def test_a_window_still_open_at_now_fails_alone_although_the_others_closed() -> None:
    late = START + pd.Timedelta(hours=2)
    windows = [(KEYS[0], candles(60), None), (KEYS[1], candles(60, start=late - pd.Timedelta(minutes=30)), None)]

    closed, still_open = check_windows(windows, now=late)

    assert closed.success  # type: ignore[union-attr]
    # Those opening from `late` on (30 of 60) have not closed by then.
    assert still_open.rows_failed == 30  # type: ignore[union-attr]
    same_result(still_open, check_candles(KEYS[1], windows[1][1], now=late))


def test_a_malformed_window_is_its_own_error_and_windows_of_other_timeframes_are_judged_by_theirs() -> None:
    hourly = SeriesKey.of("binance", "H/USDT", "1h")
    misaligned = candles(24, freq="1h")
    misaligned["open_time"] = misaligned["open_time"] + pd.Timedelta(minutes=1)
    windows = [
        (KEYS[0], candles(60).drop(columns=["volume"]), None),
        (KEYS[1], candles(60), None),
        (hourly, candles(24, freq="1h"), None),
        (SeriesKey.of("binance", "H2/USDT", "1h"), misaligned, None),
    ]

    malformed, minute, hour, off = check_windows(windows, now=NOW)

    assert isinstance(malformed, CandleFrameError)
    assert minute.success and hour.success  # type: ignore[union-attr]
    assert off.rows_failed == 24  # type: ignore[union-attr]
    same_result(off, check_candles(windows[3][0], misaligned, now=NOW))


@pytest.mark.parametrize("count", [1, 2])
def test_one_or_two_windows_give_the_single_window_result(count: int) -> None:
    windows = [(key, candles(10), None) for key in KEYS[:count]]
    for (key, frame, _), result in zip(windows, check_windows(windows, now=NOW), strict=True):
        same_result(result, check_candles(key, frame, now=NOW))
