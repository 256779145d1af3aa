"""How the gate runs Great Expectations: a cheap screening run for every batch, and the complete run, which
names the failing rows, only for a batch the screen failed; and identical duplicates found among distinct rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.quality import check_candles
from marketkeeper.quality import gx as quality_gx
from marketkeeper.quality.split import prepare

KEY = SeriesKey.of("binance", "BTC/USDT", "1m")
START = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def candles(n: int = 50) -> pd.DataFrame:
    base = 100.0 + np.arange(n) * 0.25
    return pd.DataFrame(
        {
            "open_time": pd.date_range(START, periods=n, freq="1min", tz="UTC"),
            "open": base,
            "high": base + 2.0,
            "low": base - 2.0,
            "close": base + 1.0,
            "volume": np.full(n, 5.5),
            "trade_count": np.arange(n),
        }
    )


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the checkpoints run, in order."""
    names: list[str] = []
    real = quality_gx._run

    def spy(context: Any, built: Any, batch: pd.DataFrame, parameters: Any) -> Any:
        names.append(built.name)
        return real(context, built, batch, parameters)

    monkeypatch.setattr(quality_gx, "_run", spy)
    yield names


def test_a_clean_batch_runs_only_the_screening_checkpoint(runs: list[str]) -> None:
    result = check_candles(KEY, candles(), now=NOW)
    assert result.success and len(result.passed) == 50
    assert runs == ["candles"]
    assert all(o.success and o.unexpected_count == 0 for o in result.results)
    assert result.summary["statistics"]["unsuccessful_expectations"] == 0


def test_a_failing_batch_is_named_row_for_row_by_the_complete_run(runs: list[str]) -> None:
    frame = candles()
    frame.loc[[3, 17, 41], "volume"] = -1.0
    frame.loc[17, "high"] = 0.5

    result = check_candles(KEY, frame, now=NOW, max_failed_fraction=1.0)

    assert runs == ["candles", "candles_complete"]
    assert sorted(result.failed["open_time"]) == [frame["open_time"][i] for i in (3, 17, 41)]
    assert result.failure_counts == {
        "expect_column_values_to_be_between(volume)": 3,
        "expect_column_pair_values_a_to_be_greater_than_b(high, open)": 1,
        "expect_column_pair_values_a_to_be_greater_than_b(high, close)": 1,
        "expect_column_pair_values_a_to_be_greater_than_b(high, low)": 1,
    }
    # The stored summary is the complete run's: GX's own counts, next to ours.
    [volume] = [
        e
        for e in result.summary["expectations"]
        if (e["expectation_type"], e["kwargs"].get("column")) == ("expect_column_values_to_be_between", "volume")
    ]
    assert (volume["success"], volume["result"]["unexpected_count"]) == (False, 3)


def test_neither_run_leaves_a_validation_result_in_the_context() -> None:
    frame = candles()
    frame.loc[5, "close"] = np.nan
    check_candles(KEY, candles(), now=NOW)
    check_candles(KEY, frame, now=NOW, max_failed_fraction=1.0)
    context, _screen = quality_gx.checkpoint()
    assert context.validation_results_store.list_keys() == []


def test_identical_copies_are_found_wherever_they_sit_among_distinct_rows() -> None:
    frame = candles(20)
    copies = frame.iloc[[0, 7, 7, 19]]
    # Same values at another open time: not a copy of row 7.
    shifted = frame.iloc[[7]].assign(open_time=frame["open_time"][7] + pd.Timedelta(seconds=30))
    batch = prepare(pd.concat([copies, frame, shifted], ignore_index=True))
    assert len(batch.skipped) == 4
    assert sorted(batch.skipped["open_time"]) == [frame["open_time"][i] for i in (0, 7, 7, 19)]
    assert len(batch.candles) == 21 and batch.candles["open_time"].is_monotonic_increasing
    assert batch.trade_counts is not None and len(batch.trade_counts) == 21


def test_rows_without_an_open_time_are_copies_only_when_identical() -> None:
    frame = candles(5)
    frame["open_time"] = frame["open_time"].astype(object)
    frame.loc[[1, 2, 3], "open_time"] = None
    frame.loc[[1, 2, 3], "close"] = [101.0, 101.0, 102.0]
    frame.loc[[1, 2, 3], ["open", "high", "low", "volume", "trade_count"]] = [100.0, 103.0, 99.0, 5.5, 9]
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    batch = prepare(frame)
    assert len(batch.skipped) == 1  # rows 1 and 2 are identical; row 3 differs in close
    assert len(batch.candles) == 4
