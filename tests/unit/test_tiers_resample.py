"""resample_candles equals an independent pandas resample (min_count=1 semantics) for every tier, holes and all."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from marketkeeper.candles import CandleFrameError, normalize_frame
from marketkeeper.tiers import RESAMPLED_COLUMNS, check_derivable, resample_candles
from marketkeeper.timeframes import TIMEFRAMES, Timeframe, TimeframeError

#: pandas' own spelling of each bucket rule: fixed ones from the epoch, weeks from Monday, calendar months.
PANDAS_RULES = {
    "3m": "3min", "5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h", "2h": "2h", "4h": "4h",
    "6h": "6h", "8h": "8h", "12h": "12h", "1d": "1D", "1w": "W-MON", "1M": "MS",
}  # fmt: skip


def base_frame(base: str, start: str, periods: int, *, seed: int = 11, holes: bool = True) -> pd.DataFrame:
    """Random-walk candles with random holes: 15% of single candles and a few whole runs gone, and optional
    values missing here and there."""
    rng = np.random.default_rng(seed)
    step = Timeframe.parse(base).duration
    times = pd.date_range(start, periods=periods, freq=step, tz="UTC")
    close = 100 + np.cumsum(rng.normal(0, 0.5, periods))
    open_ = np.r_[100.0, close[:-1]]
    spread = rng.uniform(0, 1, periods)
    frame = pd.DataFrame(
        {
            "open_time": times,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(0, 10, periods),
            "quote_volume": np.where(rng.uniform(size=periods) < 0.002, np.nan, rng.uniform(0, 1000, periods)),
            "trade_count": pd.array(
                np.where(rng.uniform(size=periods) < 0.002, None, rng.integers(0, 500, periods)), dtype="Int64"
            ),
        }
    )
    keep = rng.uniform(size=periods) > (0.15 if holes else -1)
    for run_start in rng.integers(0, periods, 6 if holes else 0):  # whole hours / days missing
        keep[run_start : run_start + int(rng.integers(60, 3000))] = False
    return normalize_frame(frame[keep])  # the stores' shape: nanosecond UTC open times


def reference(frame: pd.DataFrame, base: str, target: str) -> pd.DataFrame:
    """The same tier computed with pandas' resample, independently of the code under test."""
    indexed = frame.set_index("open_time")
    rule = PANDAS_RULES[target]
    kwargs = {"label": "left", "closed": "left"}
    if target[-1] in "mh":  # days start at midnight anyway (pandas ignores origin for them on aware indexes)
        kwargs["origin"] = "epoch"
    grouped = indexed.resample(rule, **kwargs)
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(min_count=1),
            "source_count": grouped["open"].count(),
        }
    )
    for name in ("quote_volume", "trade_count"):
        total = grouped[name].sum(min_count=1)
        out[name] = total.where(grouped[name].count() == out["source_count"])
    out = out[out["source_count"] > 0]
    bucket_end = out.index + (pd.offsets.MonthBegin(1) if target == "1M" else Timeframe.parse(target).duration)
    out["expected_count"] = (bucket_end - out.index) // Timeframe.parse(base).duration
    out = out.reset_index()
    out["trade_count"] = out["trade_count"].astype("Int64")
    out["source_count"] = out["source_count"].astype("Int64")
    out["expected_count"] = out["expected_count"].astype("Int64")
    return out[list(RESAMPLED_COLUMNS)]


# Seven weeks from a Wednesday in mid-month: partial first and last weeks and months.
ONE_MINUTE = base_frame("1m", "2024-01-17 13:37", 7 * 7 * 1440)


@pytest.mark.parametrize("target", [tf for tf in TIMEFRAMES if tf != "1m"])
def test_every_tier_from_1m_equals_pandas_resample(target: str) -> None:
    derived = resample_candles(ONE_MINUTE, "1m", target)
    expected = reference(ONE_MINUTE, "1m", target)
    assert len(derived) > 1
    pd.testing.assert_frame_equal(derived, expected, check_freq=False)
    # Holes were kept as holes: some buckets are incomplete, none has more members than it spans.
    assert (derived["source_count"] <= derived["expected_count"]).all()
    if target in ("1h", "1d", "1w", "1M"):
        assert (derived["source_count"] < derived["expected_count"]).any()


@pytest.mark.parametrize("target", ["4h", "1d", "1w", "1M"])
def test_tiers_from_an_hourly_base_equal_pandas_resample(target: str) -> None:
    hourly = base_frame("1h", "2023-11-03 05:00", 24 * 120, seed=3)
    pd.testing.assert_frame_equal(
        resample_candles(hourly, "1h", target), reference(hourly, "1h", target), check_freq=False
    )


def test_empty_buckets_are_absent_never_zero_volume_candles() -> None:
    frame = base_frame("1m", "2024-03-01", 3 * 60, holes=False)
    frame = frame[(frame["open_time"] < "2024-03-01 01:00") | (frame["open_time"] >= "2024-03-01 02:00")]
    derived = resample_candles(frame, "1m", "1h")
    assert derived["open_time"].tolist() == [
        pd.Timestamp("2024-03-01 00:00", tz="UTC"),
        pd.Timestamp("2024-03-01 02:00", tz="UTC"),
    ]


def test_optional_sums_are_missing_unless_every_member_has_one() -> None:
    frame = base_frame("1m", "2024-03-01", 120).iloc[:3].copy()
    frame["quote_volume"] = [1.0, np.nan, 2.0]
    frame["trade_count"] = pd.array([1, 2, 3], dtype="Int64")
    frame["open_time"] = pd.to_datetime(["2024-03-01 00:00", "2024-03-01 00:01", "2024-03-01 00:05"], utc=True)
    derived = resample_candles(frame, "1m", "5m")
    assert derived["quote_volume"].isna().tolist() == [True, False]
    assert derived["trade_count"].tolist() == [3, 3]
    assert derived["source_count"].tolist() == [2, 1]
    assert derived["expected_count"].tolist() == [5, 5]
    without = resample_candles(frame.drop(columns=["quote_volume", "trade_count"]), "1m", "5m")
    assert list(without.columns) == list(RESAMPLED_COLUMNS)
    assert without["quote_volume"].isna().all() and without["trade_count"].isna().all()


def test_trade_counts_sum_exactly_beyond_float_precision() -> None:
    times = pd.to_datetime(["2024-03-01 00:00", "2024-03-01 00:01"], utc=True)
    frame = pd.DataFrame(
        {"open_time": times, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
         "trade_count": pd.array([2**53, 1], dtype="Int64")}
    )  # fmt: skip
    assert resample_candles(frame, "1m", "5m")["trade_count"].tolist() == [2**53 + 1]


def test_closed_before_keeps_only_buckets_that_have_closed() -> None:
    frame = base_frame("1m", "2024-03-04", 3 * 60, holes=False)
    frame = frame[frame["open_time"] < "2024-03-04 02:59"]
    all_buckets = resample_candles(frame, "1m", "1h")
    assert len(all_buckets) == 3
    at_close = resample_candles(frame, "1m", "1h", closed_before=datetime(2024, 3, 4, 2, tzinfo=UTC))
    pd.testing.assert_frame_equal(at_close, all_buckets.iloc[:2])
    just_before = resample_candles(frame, "1m", "1h", closed_before=datetime(2024, 3, 4, 1, 59, tzinfo=UTC))
    pd.testing.assert_frame_equal(just_before, all_buckets.iloc[:1])
    assert resample_candles(frame, "1m", "1h", closed_before=datetime(2024, 3, 4, tzinfo=UTC)).empty
    month = resample_candles(frame, "1m", "1M", closed_before=datetime(2024, 3, 31, tzinfo=UTC))
    assert month.empty


def test_unsorted_input_gives_the_same_result() -> None:
    frame = ONE_MINUTE.iloc[:20_000]
    shuffled = frame.sample(frac=1.0, random_state=2)
    pd.testing.assert_frame_equal(resample_candles(shuffled, "1m", "1h"), resample_candles(frame, "1m", "1h"))


def test_empty_frame_gives_an_empty_result_with_the_columns() -> None:
    derived = resample_candles(ONE_MINUTE.iloc[:0], "1m", "1h")
    assert derived.empty and list(derived.columns) == list(RESAMPLED_COLUMNS)
    assert derived.dtypes.equals(resample_candles(ONE_MINUTE.iloc[:10], "1m", "1h").dtypes)


@pytest.mark.parametrize(("base", "target"), [("1m", "1m"), ("1h", "5m"), ("1M", "1M"), ("1w", "1M"), ("5m", "3m")])
def test_refuses_tiers_that_are_not_whole_runs_of_the_base(base: str, target: str) -> None:
    with pytest.raises(TimeframeError, match=f"cannot derive {target} from {base}"):
        resample_candles(ONE_MINUTE.iloc[:0], base, target)


@pytest.mark.parametrize(("base", "target"), [("8h", "1d"), ("3m", "1w"), ("12h", "1M"), ("1d", "1w")])
def test_accepts_tiers_whose_buckets_start_on_base_boundaries(base: str, target: str) -> None:
    # 1d = 3 x 8h; Monday is 1920 x 3m after the epoch; every month starts on a 12h boundary.
    assert check_derivable(base, target) == (Timeframe.parse(base), Timeframe.parse(target))


def test_refuses_frames_it_cannot_resample_faithfully() -> None:
    frame = ONE_MINUTE.iloc[:10].copy()
    with pytest.raises(CandleFrameError, match="duplicate open times"):
        resample_candles(pd.concat([frame, frame.iloc[:1]]), "1m", "5m")
    with pytest.raises(CandleFrameError, match="not aligned to 5m"):
        resample_candles(frame, "5m", "1h")
    with pytest.raises(CandleFrameError, match=r"missing column.*volume"):
        resample_candles(frame.drop(columns=["volume"]), "1m", "5m")
    broken = frame.copy()
    broken.loc[3, "high"] = np.nan
    with pytest.raises(CandleFrameError, match="column high has missing values"):
        resample_candles(broken, "1m", "5m")


@pytest.mark.parametrize("target", ["1w", "1M"])
def test_a_tier_resampled_from_the_daily_tier_equals_the_tier_from_the_base(target: str) -> None:
    from marketkeeper.tiers import resample_tier

    daily = resample_candles(ONE_MINUTE, "1m", "1d")
    from_daily = resample_tier(daily, "1d", target, base="1m")
    pd.testing.assert_frame_equal(from_daily, resample_candles(ONE_MINUTE, "1m", target))


def test_resample_tier_refuses_members_without_source_count() -> None:
    from marketkeeper.tiers import resample_tier

    daily = resample_candles(ONE_MINUTE, "1m", "1d")
    daily.loc[2, "source_count"] = pd.NA
    with pytest.raises(CandleFrameError, match="has no source_count"):
        resample_tier(daily, "1d", "1w", base="1m")


def test_resample_ranges_equals_resample_candles_of_each_range() -> None:
    from marketkeeper.tiers import resample_ranges

    frame = ONE_MINUTE.iloc[:30_000]
    shuffled = frame.sample(frac=1.0, random_state=3)
    times = frame["open_time"]
    ranges = [
        ("5m", times.iloc[100], times.iloc[2_000]),
        ("1h", times.iloc[0], times.iloc[-1]),
        ("1d", datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)),
        ("15m", times.iloc[500], times.iloc[500]),  # empty
        ("4h", times.iloc[7], times.iloc[12_345]),
    ]
    closed = times.iloc[20_000].to_pydatetime()
    for kwargs in ({}, {"closed_before": closed}):
        got = resample_ranges(shuffled, "1m", ranges, **kwargs)
        for (target, lo, hi), derived in zip(ranges, got, strict=True):
            rows = frame[(frame["open_time"] >= lo) & (frame["open_time"] < hi)]
            pd.testing.assert_frame_equal(derived, resample_candles(rows, "1m", target, **kwargs))
    assert resample_ranges(frame, "1m", []) == []
    assert resample_ranges(frame.iloc[:0], "1m", ranges[:1])[0].empty
    with pytest.raises(TimeframeError, match="cannot derive 3m from 5m"):
        resample_ranges(frame, "5m", [("3m", *ranges[0][1:])])


def test_resample_ranges_of_a_derived_tier_equals_resample_tier_of_each_range() -> None:
    from marketkeeper.tiers import resample_ranges, resample_tier

    daily = resample_candles(ONE_MINUTE, "1m", "1d")
    times = daily["open_time"]
    ranges = [("1w", times.iloc[3], times.iloc[40]), ("1M", times.iloc[0], times.iloc[-1])]
    got = resample_ranges(daily, "1d", ranges, base="1m")
    for (target, lo, hi), derived in zip(ranges, got, strict=True):
        rows = daily[(daily["open_time"] >= lo) & (daily["open_time"] < hi)]
        pd.testing.assert_frame_equal(derived, resample_tier(rows, "1d", target, base="1m"))
    daily.loc[2, "source_count"] = pd.NA
    with pytest.raises(CandleFrameError, match="has no source_count"):
        resample_ranges(daily, "1d", ranges, base="1m")


@pytest.mark.parametrize("where", ["newest", "inside", "all", "new_only"])
def test_an_overlay_replaces_the_source_candles_at_its_open_times(where: str) -> None:
    from marketkeeper.tiers import resample_ranges, resample_tier

    daily = resample_candles(ONE_MINUTE, "1m", "1d")
    fresh = daily.iloc[{"newest": [-1], "inside": [5, 9], "all": list(range(len(daily))), "new_only": [-1]}[where]]
    fresh = fresh.reset_index(drop=True)
    fresh["close"] += 1.5  # recomputed differently from what was stored
    fresh.loc[0, "trade_count"] = pd.NA
    stored = daily.iloc[:-1] if where == "new_only" else daily
    stored = stored.drop(columns=["quote_volume"])  # a column the fresh candles have and the stored do not
    expected_source = pd.concat(
        [stored[~stored["open_time"].isin(fresh["open_time"])], fresh], ignore_index=True
    ).sort_values("open_time", ignore_index=True)
    times = daily["open_time"]
    ranges = [("1w", times.iloc[0], times.iloc[-1] + pd.Timedelta("1D")), ("1M", times.iloc[2], times.iloc[-1])]

    got = resample_ranges(stored, "1d", ranges, base="1m", overlay=fresh)

    for (target, lo, hi), derived in zip(ranges, got, strict=True):
        rows = expected_source[(expected_source["open_time"] >= lo) & (expected_source["open_time"] < hi)]
        pd.testing.assert_frame_equal(derived, resample_tier(rows, "1d", target, base="1m"))


def test_bucket_arrays_are_the_write_the_frame_would_make() -> None:
    # A recomputation writes each tier's buckets as the arrays they were computed in (no frame built and taken
    # apart again): the write must be exactly the one prepare_candles makes of the tier's frame, gaps, partial
    # buckets and missing optional sums included.
    from marketkeeper.candles import SeriesKey
    from marketkeeper.stores.prepared import prepare_candles
    from marketkeeper.tiers import bucket_ranges

    frame = ONE_MINUTE.iloc[:30_000]
    times = frame["open_time"]
    ranges = [
        ("5m", times.iloc[0], times.iloc[-1]),
        ("1d", times.iloc[0], times.iloc[-1]),
        ("1h", *[times.iloc[9]] * 2),
    ]
    for (target, _, _), buckets in zip(ranges, bucket_ranges(frame, "1m", ranges), strict=True):
        key = SeriesKey.of("x", "A/B", target)
        ours, theirs = buckets.prepared(key, store="test"), prepare_candles(key, buckets.frame, store="test")
        assert len(ours) == len(theirs) == len(buckets)
        np.testing.assert_array_equal(ours.times_ns, theirs.times_ns)
        for name in ours.values:
            np.testing.assert_array_equal(ours.values[name], theirs.values[name])
        np.testing.assert_array_equal(ours.quote_volume, theirs.quote_volume)  # NaN where a member lacked one
        np.testing.assert_array_equal(ours.trade_count, theirs.trade_count)
        np.testing.assert_array_equal(ours.trade_count_present, theirs.trade_count_present)
        assert ours.derived.keys() == theirs.derived.keys() == {"source_count", "expected_count"}
        for name in ours.derived:
            np.testing.assert_array_equal(ours.derived[name], theirs.derived[name])
        assert buckets.incomplete() == int((buckets.frame["source_count"] < buckets.frame["expected_count"]).sum())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, v: (t[::-1].copy(), v), "open_time is not in ascending order"),
        (lambda t, v: (np.r_[t[:1], t[:-1]], v), "two candles share open_time"),
        (lambda t, v: (t + 1, v), "sub-microsecond"),
        (lambda t, v: (t, {**v, "high": np.r_[np.nan, v["high"][1:]]}), "column high has NaN or infinite values"),
    ],
)
def test_a_write_of_arrays_is_refused_as_a_frame_would_be(change: object, message: str) -> None:
    from marketkeeper.candles import SeriesKey
    from marketkeeper.stores.errors import CandleStoreError
    from marketkeeper.stores.prepared import prepared_from_arrays

    times = np.arange(3, dtype=np.int64) * 300_000_000_000
    values = {name: np.ones(3) for name in ("open", "high", "low", "close", "volume")}
    times, values = change(times, values)  # type: ignore[operator]
    with pytest.raises(CandleStoreError, match=message):
        prepared_from_arrays(SeriesKey.of("x", "A/B", "5m"), times, values, store="test")
    with pytest.raises(CandleStoreError, match="source_count has negative values"):
        prepared_from_arrays(
            SeriesKey.of("x", "A/B", "5m"),
            np.arange(3, dtype=np.int64) * 300_000_000_000,
            {name: np.ones(3) for name in ("open", "high", "low", "close", "volume")},
            derived={"source_count": np.array([1, -2, 1])},
            store="test",
        )
