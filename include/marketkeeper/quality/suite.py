"""The candle suite: the expectations every batch must meet, the sentence each failure is explained with,
and the batch as the suite reads it (with the derived columns Great Expectations cannot compute itself).

Decisions the expectations encode (the issue says "no nulls, high >= max(open, close), low <= min(open,
close), volume >= 0, timestamps unique per series, aligned to the timeframe and not in the future"):

- *Not in the future* means the candle has **closed** by ``now`` (``open_time + one timeframe <= now``):
  an open candle's values are provisional and the stores and the Redis "latest closed candle" must never
  hold one. Checked as ``open_time <= timeframe.last_closed_open(now)``, which is month-correct for ``1M``.
- Prices must be positive and finite and volumes non-negative and finite, both below :data:`MAX_VALUE`
  (``1e20``), a sanity bound no market reaches: a value above it is a unit or parsing error. NaN is
  reported as a null, not twice.
- Every stored column is checked. The optional ones may be missing (no column, or NA in a row), but when
  present ``quote_volume`` is a volume like ``volume`` and ``trade_count`` a non-negative whole number a
  64-bit integer holds (1.5, ``inf`` or ``1e30`` fail, row by row, instead of failing the whole window).
- Duplicate open times: copies identical in every column are harmless, so the first is kept and the rest
  are counted as *skipped*; copies that differ are ambiguous (which one is true?), so **all** of them fail.
- Rows a source could not parse (:class:`~marketkeeper.sources.base.Reject`) fail :data:`PARSEABLE_ROW`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import (
    CLOSE,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    PRICE_COLUMNS,
    QUOTE_VOLUME,
    REQUIRED_COLUMNS,
    TRADE_COUNT,
    VOLUME,
    open_time_ns,
)
from marketkeeper.timeframes import Timeframe

__all__ = [
    "CHECKS",
    "MAX_TRADE_COUNT",
    "MAX_VALUE",
    "PARSEABLE_ROW",
    "ROW",
    "SERIES",
    "SUITE_NAME",
    "UNION_CHECKS",
    "Check",
    "ExpectationOutcome",
    "ExplainContext",
    "suite_batch",
]

SUITE_NAME: Final = "candles"
#: The pseudo-expectation of rows a source could not parse into a candle.
PARSEABLE_ROW: Final = "parseable_row"
#: Exclusive upper bound of prices and volumes: a sanity bound, far above any market's prices and volumes.
MAX_VALUE: Final = 1e20
#: Exclusive upper bound of trade counts: what a signed 64-bit integer (``Int64``, both stores) can hold.
MAX_TRADE_COUNT: Final = 2**63

#: The batch column numbering its rows, by which Great Expectations names the failing ones.
ROW: Final = "_mk_row"
#: Derived columns: whether ``open_time`` is a timeframe open time, whether ``trade_count`` is whole.
ALIGNED: Final = "open_time_aligned"
INTEGRAL: Final = "trade_count_integral"
#: The suite parameter "latest open time of a closed candle"; ``now`` changes per batch, the suite does not.
MAX_OPEN_TIME: Final = "max_open_time"
#: The union batch's column numbering the series (windows) it joins, see :data:`UNION_CHECKS`.
SERIES: Final = "_mk_series"


@dataclass(frozen=True, slots=True)
class ExpectationOutcome:
    """How one expectation of the suite fared on a batch."""

    #: The expectation type and its column(s), e.g. ``expect_column_values_to_not_be_null(volume)``.
    name: str
    #: The Great Expectations expectation type (or :data:`PARSEABLE_ROW`).
    expectation_type: str
    columns: tuple[str, ...]
    success: bool
    unexpected_count: int


@dataclass(frozen=True, slots=True)
class ExplainContext:
    """What an explanation may need besides the row itself."""

    timeframe: Timeframe
    now: datetime
    #: How often each open time occurs in the checked batch (for the duplicate reason).
    copies: pd.Series


Explain = Callable[[Mapping[str, Any], ExplainContext], str]


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation: the Great Expectations class and arguments, and how a failing row is explained."""

    gx_class: str
    expectation_type: str
    columns: tuple[str, ...]
    kwargs: Mapping[str, Any]
    explain: Explain

    @property
    def name(self) -> str:
        """The expectation type and its columns, unique within :data:`CHECKS`."""
        return f"{self.expectation_type}({', '.join(self.columns)})"


def _number(value: Any) -> str:
    return repr(float(value))


def _count(value: Any) -> str:
    number = float(value)
    whole = np.isfinite(number) and number == np.floor(number) and abs(number) < MAX_TRADE_COUNT
    return str(int(number)) if whole else repr(number)


def _when(value: Any) -> str:
    return pd.Timestamp(value).isoformat()


def _not_null(column: str) -> Check:
    return Check(
        "ExpectColumnValuesToNotBeNull",
        "expect_column_values_to_not_be_null",
        (column,),
        {"column": column},
        lambda row, ctx: f"{column} is missing",
    )


def _below_max(column: str, *, positive: bool, what: str) -> Check:
    """``column`` in ``(0, MAX_VALUE)`` if ``positive``, else ``[0, MAX_VALUE)``; a failure says it is not ``what``."""
    lower = {"strict_min": True} if positive else {}
    return Check(
        "ExpectColumnValuesToBeBetween",
        "expect_column_values_to_be_between",
        (column,),
        {"column": column, "min_value": 0.0, "max_value": MAX_VALUE, **lower, "strict_max": True},
        lambda row, ctx: f"{column} {_number(row[column])} is not {what} below 1e20",
    )


def _price(column: str) -> Check:
    return _below_max(column, positive=True, what="a positive finite price")


def _volume(column: str) -> Check:
    # Missing values pass (Great Expectations leaves nulls to the null checks): volume has one, quote_volume
    # is optional.
    return _below_max(column, positive=False, what="a non-negative finite number")


def _at_least(column_a: str, column_b: str) -> Check:
    return Check(
        "ExpectColumnPairValuesAToBeGreaterThanB",
        "expect_column_pair_values_a_to_be_greater_than_b",
        (column_a, column_b),
        # A missing value is the null expectations' finding; reporting it here too would only add noise.
        {"column_A": column_a, "column_B": column_b, "or_equal": True, "ignore_row_if": "either_value_is_missing"},
        lambda row, ctx: f"{column_a} {_number(row[column_a])} is below {column_b} {_number(row[column_b])}",
    )


def _explain_count_range(row: Mapping[str, Any], ctx: ExplainContext) -> str:
    return f"trade_count {_count(row[TRADE_COUNT])} is not a non-negative count below 2**63"


def _explain_count_whole(row: Mapping[str, Any], ctx: ExplainContext) -> str:
    return f"trade_count {_count(row[TRADE_COUNT])} is not a whole number"


def _explain_duplicate(row: Mapping[str, Any], ctx: ExplainContext) -> str:
    copies = int(ctx.copies[row[OPEN_TIME]])
    return f"open_time {_when(row[OPEN_TIME])} appears {copies} times with different values"


def _alignment_rule(timeframe: Timeframe) -> str:
    if timeframe.unit == "w":
        return "weeks open on Monday 00:00 UTC"
    if timeframe.unit == "M":
        return "months open on the 1st at 00:00 UTC"
    return f"{timeframe} candles open on multiples of {timeframe} since 1970-01-01 00:00 UTC"


def _explain_misaligned(row: Mapping[str, Any], ctx: ExplainContext) -> str:
    return f"open_time {_when(row[OPEN_TIME])} is not a {ctx.timeframe} open time ({_alignment_rule(ctx.timeframe)})"


def _explain_open(row: Mapping[str, Any], ctx: ExplainContext) -> str:
    opened = pd.Timestamp(row[OPEN_TIME]).to_pydatetime()
    return (
        f"candle opening {opened.isoformat()} has not closed at {ctx.now.isoformat()} "
        f"(it closes at {ctx.timeframe.next_open(opened).isoformat()})"
    )


_UNIQUE_OPEN_TIME: Final = Check(
    "ExpectColumnValuesToBeUnique",
    "expect_column_values_to_be_unique",
    (OPEN_TIME,),
    {"column": OPEN_TIME},
    _explain_duplicate,
)

#: The suite, in the order failures are listed. Every check's :attr:`Check.name` is distinct (a test says so):
#: results are matched back to checks by it.
CHECKS: Final[tuple[Check, ...]] = (
    *(_not_null(column) for column in REQUIRED_COLUMNS),
    *(_price(column) for column in PRICE_COLUMNS),
    _volume(VOLUME),
    _volume(QUOTE_VOLUME),
    # The batch carries trade counts as received (floats), so 1.5 or 1e30 reach the suite instead of failing
    # the conversion to Int64 for the whole batch.
    Check(
        "ExpectColumnValuesToBeBetween",
        "expect_column_values_to_be_between",
        (TRADE_COUNT,),
        {"column": TRADE_COUNT, "min_value": 0, "max_value": MAX_TRADE_COUNT, "strict_max": True},
        _explain_count_range,
    ),
    Check(
        "ExpectColumnValuesToBeInSet",
        "expect_column_values_to_be_in_set",
        (INTEGRAL,),
        {"column": INTEGRAL, "value_set": [True]},
        _explain_count_whole,
    ),
    _at_least(HIGH, OPEN),
    _at_least(HIGH, CLOSE),
    _at_least(OPEN, LOW),
    _at_least(CLOSE, LOW),
    # Implied by the four above, but "high < low" is the finding a reader looks for.
    _at_least(HIGH, LOW),
    _UNIQUE_OPEN_TIME,
    # GX has no calendar-aware alignment check; the vectorised timeframe helper precomputes it (1w, 1M right).
    Check(
        "ExpectColumnValuesToBeInSet",
        "expect_column_values_to_be_in_set",
        (ALIGNED,),
        {"column": ALIGNED, "value_set": [True]},
        _explain_misaligned,
    ),
    Check(
        "ExpectColumnValuesToBeBetween",
        "expect_column_values_to_be_between",
        (OPEN_TIME,),
        {"column": OPEN_TIME, "max_value": {"$PARAMETER": MAX_OPEN_TIME}},
        _explain_open,
    ),
)


#: The suite over a union of several series' windows of one timeframe (a batch of markets screened in one
#: run): the same checks, with open times unique per series instead of over the whole union. Every check is
#: row-wise or per series, so when the union meets all of them each window meets all of :data:`CHECKS`; a
#: union that fails says nothing about which window, and each is judged on its own again.
UNION_CHECKS: Final[tuple[Check, ...]] = tuple(
    Check(
        "ExpectCompoundColumnsToBeUnique",
        "expect_compound_columns_to_be_unique",
        (SERIES, OPEN_TIME),
        {"column_list": [SERIES, OPEN_TIME]},
        _explain_duplicate,
    )
    if check is _UNIQUE_OPEN_TIME
    else check
    for check in CHECKS
)


def suite_batch(
    candles: pd.DataFrame,
    trade_counts: npt.NDArray[np.float64] | None,
    timeframe: Timeframe,
    now: datetime,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The batch the suite reads, and its parameters.

    :param candles: a normalized candle frame (optional columns may be absent).
    :param trade_counts: the trade counts as received, as floats with NaN where missing, row for row with
        ``candles`` (``None`` when the frame had no trade counts).
    :param timeframe: the series' timeframe, for alignment and closing.
    :param now: the instant candles must have closed by.
    :returns: ``candles`` with every column the suite checks (an absent optional column as all missing,
        trade counts as received, the derived flags) and :data:`ROW` numbering the rows; and the suite
        parameters for this batch.
    """
    n = len(candles)
    ns = open_time_ns(candles)
    # Missing open times are the null check's finding, so alignment leaves them out (None is skipped).
    aligned = pd.Series(timeframe.is_aligned_ns(ns), dtype=object)
    aligned[candles[OPEN_TIME].isna().to_numpy()] = None
    counts = np.full(n, np.nan) if trade_counts is None else trade_counts
    # Missing and non-finite counts are left to the range check (None is skipped here).
    finite = np.isfinite(counts)
    integral = pd.Series(np.floor(counts) == counts, dtype=object)
    integral[~finite] = None
    columns: dict[str, Any] = {
        TRADE_COUNT: counts,
        INTEGRAL: integral,
        ALIGNED: aligned,
        ROW: np.arange(n, dtype=np.int64),
    }
    if QUOTE_VOLUME not in candles.columns:
        columns[QUOTE_VOLUME] = np.full(n, np.nan)
    parameters = {MAX_OPEN_TIME: pd.Timestamp(timeframe.last_closed_open(now))}
    return candles.assign(**columns), parameters
