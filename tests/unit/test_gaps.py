"""Gap detection without a server: holes at the edges, adjacent, single, empty series, weekly and monthly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from marketkeeper.gaps import Gap, detection_window, find_gap_arrays, find_gaps
from marketkeeper.timeframes import InvalidRangeError, NaiveDatetimeError, Timeframe

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
M = timedelta(minutes=1)


def ns(times: list[datetime]) -> np.ndarray:
    return pd.DatetimeIndex(times).as_unit("ns").asi8


def minutes(*offsets: int) -> np.ndarray:
    return ns([T0 + i * M for i in offsets])


def test_a_complete_series_has_no_gaps() -> None:
    assert find_gaps(minutes(*range(10)), "1m", T0, T0 + 10 * M) == []


def test_holes_at_the_start_the_end_and_in_the_middle() -> None:
    present = [2, 3, 4, 6, 7]
    gaps = find_gaps(minutes(*present), "1m", T0, T0 + 10 * M)
    assert gaps == [
        Gap(T0, T0 + 2 * M, 2),
        Gap(T0 + 5 * M, T0 + 6 * M, 1),
        Gap(T0 + 8 * M, T0 + 10 * M, 2),
    ]


def test_adjacent_single_candle_holes_are_separate_runs() -> None:
    gaps = find_gaps(minutes(0, 2, 4), "1m", T0, T0 + 5 * M)
    assert gaps == [Gap(T0 + M, T0 + 2 * M, 1), Gap(T0 + 3 * M, T0 + 4 * M, 1)]


def test_an_empty_series_is_one_gap_over_the_window() -> None:
    assert find_gaps(np.array([], dtype=np.int64), "1h", T0, T0 + timedelta(hours=5)) == [
        Gap(T0, T0 + timedelta(hours=5), 5)
    ]


def test_an_empty_window_has_no_gaps() -> None:
    assert find_gaps(minutes(1, 2), "1m", T0, T0) == []


def test_a_series_of_one_candle() -> None:
    assert find_gaps(minutes(0), "1m", T0, T0 + M) == []
    assert find_gaps(minutes(1), "1m", T0, T0 + 3 * M) == [Gap(T0, T0 + M, 1), Gap(T0 + 2 * M, T0 + 3 * M, 1)]


def test_unsorted_duplicate_misaligned_and_out_of_window_times_are_ignored_not_fatal() -> None:
    times = np.concatenate([minutes(4, 0, 4, 1, -5, 30), ns([T0 + 2 * M + timedelta(seconds=7)])])
    assert find_gaps(times, "1m", T0, T0 + 5 * M) == [Gap(T0 + 2 * M, T0 + 4 * M, 2)]


def test_an_unaligned_window_is_rounded_up_to_open_times() -> None:
    gaps = find_gaps(minutes(1), "1m", T0 + timedelta(seconds=30), T0 + 2 * M + timedelta(seconds=1))
    # Open times in [00:00:30, 00:02:01) are 00:01 and 00:02; 00:02 is missing.
    assert gaps == [Gap(T0 + 2 * M, T0 + 3 * M, 1)]


def test_weekly_gaps_are_monday_aligned() -> None:
    weeks = [T0 + timedelta(weeks=i) for i in (0, 1, 4)]
    gaps = find_gaps(ns(weeks), "1w", T0, T0 + timedelta(weeks=6))
    assert gaps == [
        Gap(T0 + timedelta(weeks=2), T0 + timedelta(weeks=4), 2),
        Gap(T0 + timedelta(weeks=5), T0 + timedelta(weeks=6), 1),
    ]
    assert all(g.start.weekday() == 0 for g in gaps)


def test_monthly_gaps_follow_the_calendar() -> None:
    present = [datetime(2023, m, 1, tzinfo=UTC) for m in (1, 2, 5, 12)]
    gaps = find_gaps(ns(present), "1M", datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    assert gaps == [
        Gap(datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 5, 1, tzinfo=UTC), 2),
        Gap(datetime(2023, 6, 1, tzinfo=UTC), datetime(2023, 12, 1, tzinfo=UTC), 6),
        Gap(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), 2),
    ]


def test_a_mid_month_time_is_not_a_monthly_candle() -> None:
    times = ns([datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 2, 15, tzinfo=UTC)])
    gaps = find_gaps(times, "1M", datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC))
    assert gaps == [Gap(datetime(2023, 2, 1, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC), 1)]


@pytest.mark.parametrize("tf", ["3m", "15m", "4h", "1d", "1w", "1M"])
def test_counts_match_the_timeframe_for_every_timeframe(tf: str) -> None:
    timeframe = Timeframe.parse(tf)
    start, end = datetime(2021, 3, 1, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC)
    opens = timeframe.range_ns(start, end)
    rng = np.random.default_rng(1)
    kept = opens[rng.random(len(opens)) > 0.2]
    arrays = find_gap_arrays(kept, tf, start, end)
    assert arrays.total_missing == len(opens) - len(kept)
    for gap in arrays.to_list():
        assert gap.missing == timeframe.count(gap.start, gap.end)
        assert timeframe.is_aligned(gap.start) and timeframe.is_aligned(gap.end)


def test_datetime64_input_is_accepted() -> None:
    times = np.array(["2024-01-01T00:00", "2024-01-01T00:02"], dtype="datetime64[m]")
    assert find_gaps(times, "1m", T0, T0 + 3 * M) == [Gap(T0 + M, T0 + 2 * M, 1)]


def test_bad_windows_raise() -> None:
    with pytest.raises(InvalidRangeError):
        find_gaps(minutes(0), "1m", T0 + M, T0)
    with pytest.raises(NaiveDatetimeError):
        find_gaps(minutes(0), "1m", datetime(2024, 1, 1), T0)  # noqa: DTZ001


def test_the_window_ends_after_the_last_closed_candle() -> None:
    now = T0 + timedelta(hours=3, minutes=30)
    assert detection_window("1h", now=now, first=T0 + timedelta(minutes=10)) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=3),
    )
    assert detection_window("1M", now=datetime(2024, 3, 15, tzinfo=UTC), first=T0) == (
        T0,
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert detection_window("1m", now=T0, first=T0 + M) == (T0 + M, T0 + M)


@pytest.mark.parametrize("tf", ["1m", "1h", "1w"])
def test_sorted_and_shuffled_input_give_the_same_gaps(tf: str) -> None:
    timeframe = Timeframe.parse(tf)
    start, end = datetime(2022, 1, 3, tzinfo=UTC), datetime(2022, 1, 3, tzinfo=UTC) + 5000 * timeframe.duration
    opens = timeframe.range_ns(start, end)
    rng = np.random.default_rng(7)
    kept = opens[rng.random(len(opens)) > 0.3]
    window = (start + 10 * timeframe.duration, end - 10 * timeframe.duration)
    fast = find_gaps(kept, tf, *window)
    general = find_gaps(rng.permutation(kept), tf, *window)
    assert fast == general
    assert sum(g.missing for g in fast) == timeframe.count(*window) - int(
        ((kept >= opens[10]) & (kept < opens[-10])).sum()
    )
