"""The Great Expectations checkpoint every candle batch passes, and the split of a batch into good and bad rows.

Decisions the expectations encode (the issue says "no nulls, high >= max(open, close), low <= min(open,
close), volume >= 0, timestamps unique per series, aligned to the timeframe and not in the future"):

- *Not in the future* means the candle has **closed** by ``now`` (``open_time + one timeframe <= now``):
  an open candle's values are provisional and the stores and the Redis "latest closed candle" must never
  hold one. Checked as ``open_time <= timeframe.last_closed_open(now)``, which is month-correct for ``1M``.
- Prices must be positive and finite and volumes non-negative and finite, both below ``1e20`` (the
  SQL store's ``NUMERIC(38, 18)`` has 20 integer digits). NaN is reported as a null, not twice.
- Duplicate open times: copies identical in every column are harmless, so the first is kept and the rest
  are counted as *skipped*; copies that differ are ambiguous (which one is true?), so **all** of them fail.
- Rows a source could not parse (:class:`~marketkeeper.sources.base.Reject`) fail ``parseable_row``.

Nothing is dropped silently: ``len(passed) + len(failed) + rows_skipped == rows_checked``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import (
    CLOSE,
    DTYPES,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    PRICE_COLUMNS,
    REQUIRED_COLUMNS,
    VOLUME,
    SeriesKey,
    normalize_frame,
    open_time_ns,
)
from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.timeframes import Timeframe, check_range, ensure_utc

if TYPE_CHECKING:
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.data_context import AbstractDataContext

__all__ = [
    "FAILED_EXPECTATION",
    "FILE",
    "LINE",
    "MAX_VALUE",
    "PARSEABLE_ROW",
    "RAW",
    "REASON",
    "SUITE_NAME",
    "ExpectationOutcome",
    "GateEvaluationError",
    "GateResult",
    "QualityGateError",
    "check_candles",
    "enforce_threshold",
    "jsonable",
]

SUITE_NAME: Final = "candles"
#: The pseudo-expectation of rows a source could not parse into a candle.
PARSEABLE_ROW: Final = "parseable_row"
#: Exclusive upper bound of prices and volumes: what ``NUMERIC(38, 18)`` can hold.
MAX_VALUE: Final = 1e20

#: Columns of :attr:`GateResult.failed` besides the candle columns.
FAILED_EXPECTATION: Final = "failed_expectation"
REASON: Final = "reason"
#: A rejected source row's verbatim text, file and line (missing for rows of the batch itself).
RAW: Final = "raw"
FILE: Final = "file"
LINE: Final = "line"

_ROW: Final = "_mk_row"
_ALIGNED: Final = "open_time_aligned"
_MAX_OPEN_TIME: Final = "max_open_time"
_SEPARATOR: Final = "; "
# GX's own cap on the example values it reports; the complete lists go to quarantine, not to the summary.
_SUMMARY_DROP: Final = ("unexpected_list", "unexpected_index_list", "partial_unexpected_index_list")


class QualityGateError(MarketkeeperError):
    """More of a batch failed the quality gate than the threshold allows; the task must fail."""

    def __init__(
        self,
        key: SeriesKey,
        start: datetime,
        end: datetime,
        *,
        rows_failed: int,
        rows_checked: int,
        max_failed_fraction: float,
        failures: Mapping[str, int],
    ) -> None:
        listed = ", ".join(f"{name} x{count}" for name, count in failures.items())
        super().__init__(
            f"quality gate failed for {key} over [{start.isoformat()}, {end.isoformat()}): "
            f"{rows_failed} of {rows_checked} rows ({rows_failed / rows_checked:.2%}) failed, above the "
            f"{max_failed_fraction:.2%} threshold; failed expectations: {listed} "
            "(the rows are in quarantined_candles)"
        )
        self.key = key
        self.start = start
        self.end = end
        self.rows_failed = rows_failed
        self.rows_checked = rows_checked
        self.max_failed_fraction = max_failed_fraction
        self.failures = dict(failures)


class GateEvaluationError(MarketkeeperError):
    """Great Expectations could not evaluate an expectation, so the batch was not judged at all."""


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


@dataclass(frozen=True, slots=True, eq=False)
class GateResult:
    """A batch judged by :func:`check_candles`.

    ``passed`` holds the good rows in the canonical candle shape, ready to store. ``failed`` holds the bad
    rows with their values as received plus ``failed_expectation`` (every expectation the row broke, joined
    by ``"; "``), ``reason`` (one sentence per broken expectation, same order) and, for rejected source rows,
    ``raw``, ``file`` and ``line``. ``skipped`` holds identical duplicates of rows kept in ``passed`` or
    ``failed``. ``success`` is True only when every row passed; the threshold is :func:`enforce_threshold`'s.
    """

    key: SeriesKey
    now: datetime
    passed: pd.DataFrame
    failed: pd.DataFrame
    skipped: pd.DataFrame
    results: tuple[ExpectationOutcome, ...]
    rows_checked: int
    rows_failed: int
    rows_skipped: int
    success: bool
    max_failed_fraction: float
    #: The Great Expectations validation result, JSON-able, without the complete unexpected-value lists.
    summary: dict[str, Any]

    @property
    def rows_in(self) -> int:
        """Rows received (batch rows and rejected source rows); the same as :attr:`rows_checked`."""
        return self.rows_checked

    @property
    def failed_fraction(self) -> float:
        """Failed rows over rows checked (0 for an empty batch)."""
        return self.rows_failed / self.rows_checked if self.rows_checked else 0.0

    @property
    def failure_counts(self) -> dict[str, int]:
        """Unexpected rows per failed expectation, in suite order."""
        return {o.name: o.unexpected_count for o in self.results if not o.success}

    @property
    def within_threshold(self) -> bool:
        """True when the failed fraction does not exceed :attr:`max_failed_fraction`."""
        return self.failed_fraction <= self.max_failed_fraction


@dataclass(frozen=True, slots=True)
class _Context:
    timeframe: Timeframe
    now: datetime
    #: How often each open time occurs in the checked batch (for the duplicate reason).
    copies: pd.Series


_Explain = Callable[[Mapping[str, Any], _Context], str]


@dataclass(frozen=True, slots=True)
class _Check:
    gx_class: str
    expectation_type: str
    columns: tuple[str, ...]
    kwargs: Mapping[str, Any]
    explain: _Explain

    @property
    def name(self) -> str:
        return f"{self.expectation_type}({', '.join(self.columns)})"


def _number(value: Any) -> str:
    return repr(float(value))


def _when(value: Any) -> str:
    return pd.Timestamp(value).isoformat()


def _not_null(column: str) -> _Check:
    return _Check(
        "ExpectColumnValuesToNotBeNull",
        "expect_column_values_to_not_be_null",
        (column,),
        {"column": column},
        lambda row, ctx: f"{column} is missing",
    )


def _price(column: str) -> _Check:
    return _Check(
        "ExpectColumnValuesToBeBetween",
        "expect_column_values_to_be_between",
        (column,),
        {"column": column, "min_value": 0.0, "max_value": MAX_VALUE, "strict_min": True, "strict_max": True},
        lambda row, ctx: f"{column} {_number(row[column])} is not a positive finite price below 1e20",
    )


def _volume() -> _Check:
    return _Check(
        "ExpectColumnValuesToBeBetween",
        "expect_column_values_to_be_between",
        (VOLUME,),
        {"column": VOLUME, "min_value": 0.0, "max_value": MAX_VALUE, "strict_max": True},
        lambda row, ctx: f"volume {_number(row[VOLUME])} is not a non-negative finite number below 1e20",
    )


def _at_least(column_a: str, column_b: str) -> _Check:
    return _Check(
        "ExpectColumnPairValuesAToBeGreaterThanB",
        "expect_column_pair_values_a_to_be_greater_than_b",
        (column_a, column_b),
        # A missing value is the null expectations' finding; reporting it here too would only add noise.
        {"column_A": column_a, "column_B": column_b, "or_equal": True, "ignore_row_if": "either_value_is_missing"},
        lambda row, ctx: f"{column_a} {_number(row[column_a])} is below {column_b} {_number(row[column_b])}",
    )


def _explain_duplicate(row: Mapping[str, Any], ctx: _Context) -> str:
    copies = int(ctx.copies[row[OPEN_TIME]])
    return f"open_time {_when(row[OPEN_TIME])} appears {copies} times with different values"


def _alignment_rule(timeframe: Timeframe) -> str:
    if timeframe.unit == "w":
        return "weeks open on Monday 00:00 UTC"
    if timeframe.unit == "M":
        return "months open on the 1st at 00:00 UTC"
    return f"{timeframe} candles open on multiples of {timeframe} since 1970-01-01 00:00 UTC"


def _explain_misaligned(row: Mapping[str, Any], ctx: _Context) -> str:
    return f"open_time {_when(row[OPEN_TIME])} is not a {ctx.timeframe} open time ({_alignment_rule(ctx.timeframe)})"


def _explain_open(row: Mapping[str, Any], ctx: _Context) -> str:
    opened = pd.Timestamp(row[OPEN_TIME]).to_pydatetime()
    return (
        f"candle opening {opened.isoformat()} has not closed at {ctx.now.isoformat()} "
        f"(it closes at {ctx.timeframe.next_open(opened).isoformat()})"
    )


#: The suite, in the order failures are listed.
CHECKS: Final[tuple[_Check, ...]] = (
    *(_not_null(column) for column in REQUIRED_COLUMNS),
    *(_price(column) for column in PRICE_COLUMNS),
    _volume(),
    _at_least(HIGH, OPEN),
    _at_least(HIGH, CLOSE),
    _at_least(OPEN, LOW),
    _at_least(CLOSE, LOW),
    # Implied by the four above, but "high < low" is the finding a reader looks for.
    _at_least(HIGH, LOW),
    _Check(
        "ExpectColumnValuesToBeUnique",
        "expect_column_values_to_be_unique",
        (OPEN_TIME,),
        {"column": OPEN_TIME},
        _explain_duplicate,
    ),
    # GX has no calendar-aware alignment check; the vectorised timeframe helper precomputes it (1w, 1M right).
    _Check(
        "ExpectColumnValuesToBeInSet",
        "expect_column_values_to_be_in_set",
        (_ALIGNED,),
        {"column": _ALIGNED, "value_set": [True]},
        _explain_misaligned,
    ),
    # ``now`` changes per call; a suite parameter keeps the suite itself cacheable.
    _Check(
        "ExpectColumnValuesToBeBetween",
        "expect_column_values_to_be_between",
        (OPEN_TIME,),
        {"column": OPEN_TIME, "max_value": {"$PARAMETER": _MAX_OPEN_TIME}},
        _explain_open,
    ),
)
_CHECKS_BY_NAME: Final = {check.name: check for check in CHECKS}
assert len(_CHECKS_BY_NAME) == len(CHECKS), "every check needs a distinct name"

_RUN_LOCK = threading.Lock()


def _require_analytics_off() -> None:
    value = os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if value.strip().lower() not in ("false", "0", "no", "off"):
        raise ConfigurationError(
            f"GX_ANALYTICS_ENABLED is {value!r}; marketkeeper runs Great Expectations with analytics off "
            "(GX_ANALYTICS_ENABLED=False): it must not phone home from data pipelines"
        )


@lru_cache(maxsize=1)
def _checkpoint() -> tuple[AbstractDataContext, Checkpoint]:
    """The process's context and checkpoint: building them is slow; the batch is a run parameter."""
    _require_analytics_off()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm bars would flood Airflow task logs, one per batch.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("marketkeeper")
        .add_dataframe_asset(SUITE_NAME)
        .add_batch_definition_whole_dataframe("batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for check in CHECKS:
        expectation_class = getattr(gxe, check.gx_class)
        suite.add_expectation(expectation_class(**check.kwargs, meta={"check": check.name}))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=SUITE_NAME,
            validation_definitions=[definition],
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [_ROW],
                "return_unexpected_index_query": False,
            },
        )
    )
    return context, checkpoint


def _check_fraction(max_failed_fraction: float) -> float:
    if not 0.0 <= max_failed_fraction <= 1.0:
        raise ValueError(f"max_failed_fraction must lie in [0, 1], got {max_failed_fraction!r}")
    return float(max_failed_fraction)


def check_candles(
    key: SeriesKey,
    frame: pd.DataFrame,
    *,
    now: datetime,
    max_failed_fraction: float = 0.01,
    rejects: pd.DataFrame | None = None,
) -> GateResult:
    """Run one batch of ``key``'s candles through the Great Expectations checkpoint.

    :param key: the series the batch belongs to (its timeframe decides alignment and closing).
    :param frame: candle rows (any order, NaNs and duplicates welcome: judging them is the point).
    :param now: the instant candles must have closed by; timezone-aware.
    :param max_failed_fraction: kept on the result for :func:`enforce_threshold`; nothing is raised here.
    :param rejects: rows the source could not parse (:func:`~marketkeeper.sources.base.rejects_frame`),
        reported as failing :data:`PARSEABLE_ROW`.
    :raises GateEvaluationError: Great Expectations failed to evaluate an expectation.
    :raises CandleFrameError: ``frame`` lacks a candle column or has naive open times.
    """
    now = ensure_utc(now, "now")
    max_failed_fraction = _check_fraction(max_failed_fraction)
    candles = normalize_frame(frame)
    identical = candles.duplicated(keep="first")
    skipped = candles[identical].reset_index(drop=True)
    candles = candles[~identical].reset_index(drop=True)
    rejected = _rejects_as_failed(rejects, candles.columns)

    outcomes, findings, summary = _validate(candles, key.timeframe, now)
    outcomes.append(ExpectationOutcome(PARSEABLE_ROW, PARSEABLE_ROW, (), not len(rejected), len(rejected)))
    bad = np.zeros(len(candles), dtype=bool)
    bad[list(findings)] = True
    passed = candles[~bad].reset_index(drop=True)
    failed = _failed_rows(candles, bad, findings, _Context(key.timeframe, now, candles[OPEN_TIME].value_counts()))
    if len(rejected):
        failed = pd.concat([failed, rejected], ignore_index=True) if len(failed) else rejected

    rows_checked = len(candles) + len(skipped) + len(rejected)
    assert len(passed) + len(failed) + len(skipped) == rows_checked, "the gate lost rows"
    return GateResult(
        key=key,
        now=now,
        passed=passed,
        failed=failed,
        skipped=skipped,
        results=tuple(outcomes),
        rows_checked=rows_checked,
        rows_failed=len(failed),
        rows_skipped=len(skipped),
        success=not len(failed),
        max_failed_fraction=max_failed_fraction,
        summary=summary,
    )


def enforce_threshold(
    result: GateResult,
    key: SeriesKey,
    start: datetime,
    end: datetime,
    max_failed_fraction: float | None = None,
) -> None:
    """Raise :class:`QualityGateError` when more than ``max_failed_fraction`` of the batch failed.

    Call it after :func:`~marketkeeper.quality.store.record_gate`, so the evidence is stored even though
    the task then fails.

    :param result: what :func:`check_candles` found.
    :param key: the series, named in the message.
    :param start: the batch's range start (inclusive), named in the message.
    :param end: the batch's range end (exclusive), named in the message.
    :param max_failed_fraction: the threshold in ``[0, 1]``; default: the one given to :func:`check_candles`.
    """
    start, end = check_range(start, end)
    limit = result.max_failed_fraction if max_failed_fraction is None else _check_fraction(max_failed_fraction)
    if result.rows_checked and result.rows_failed / result.rows_checked > limit:
        raise QualityGateError(
            key,
            start,
            end,
            rows_failed=result.rows_failed,
            rows_checked=result.rows_checked,
            max_failed_fraction=limit,
            failures=result.failure_counts,
        )


def _validate(
    candles: pd.DataFrame, timeframe: Timeframe, now: datetime
) -> tuple[list[ExpectationOutcome], dict[int, list[_Check]], dict[str, Any]]:
    """Run the checkpoint; return the outcomes, the checks each failing row broke, and the GX summary."""
    ns = open_time_ns(candles)
    aligned = timeframe.is_aligned_ns(ns)
    # Missing open times are the null check's finding, so alignment leaves them out (None is skipped).
    flags = pd.Series(aligned, dtype=object)
    flags[candles[OPEN_TIME].isna().to_numpy()] = None
    batch = candles.assign(**{_ALIGNED: flags, _ROW: np.arange(len(candles), dtype=np.int64)})
    max_open_time = pd.Timestamp(timeframe.last_closed_open(now))
    context, checkpoint = _checkpoint()
    with _RUN_LOCK:
        run = checkpoint.run(
            batch_parameters={"dataframe": batch},
            expectation_parameters={_MAX_OPEN_TIME: max_open_time},
        )
        # The ephemeral context keeps every result in memory; the ledger is where results are kept, so a
        # long ingestion would otherwise grow by one complete result per batch.
        for identifier in run.run_results:
            context.validation_results_store.remove_key(identifier)
    [suite_result] = run.run_results.values()

    outcomes: list[ExpectationOutcome] = []
    findings: dict[int, list[_Check]] = {}
    by_name = {
        (r.expectation_config.meta or {}).get("check") if r.expectation_config else None: r
        for r in suite_result.results
    }
    for check in CHECKS:
        evaluated = by_name.get(check.name)
        if evaluated is None:
            raise GateEvaluationError(f"the candles suite returned no result for {check.name}")
        _raise_if_errored(check, evaluated)
        rows = [int(entry[_ROW]) for entry in evaluated.result.get("unexpected_index_list") or ()]
        if not evaluated.success and not rows:
            raise GateEvaluationError(f"{check.name} failed without naming the rows: {evaluated.result}")
        for row in rows:
            findings.setdefault(row, []).append(check)
        outcomes.append(
            ExpectationOutcome(check.name, check.expectation_type, check.columns, bool(evaluated.success), len(rows))
        )
    return outcomes, findings, _summary(suite_result.describe_dict())


def _raise_if_errored(check: _Check, evaluated: ExpectationValidationResult) -> None:
    info = evaluated.exception_info or {}
    # GX 1.x reports either one flat dict or one dict per metric that raised.
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(e.get("exception_message")) for e in entries if e.get("raised_exception")]
    if messages:
        raise GateEvaluationError(f"Great Expectations could not evaluate {check.name}: {'; '.join(messages)}")


def _failed_rows(
    candles: pd.DataFrame, bad: npt.NDArray[np.bool_], findings: Mapping[int, list[_Check]], ctx: _Context
) -> pd.DataFrame:
    failed = candles[bad]
    names: list[str] = []
    reasons: list[str] = []
    records = failed.to_dict("records")
    for index, record in zip(failed.index, records, strict=True):
        checks = findings[int(index)]
        names.append(_SEPARATOR.join(check.name for check in checks))
        reasons.append(_SEPARATOR.join(check.explain(record, ctx) for check in checks))
    out = failed.reset_index(drop=True)
    out[FAILED_EXPECTATION] = pd.Series(names, dtype=object)
    out[REASON] = pd.Series(reasons, dtype=object)
    out[RAW] = pd.Series([None] * len(out), dtype=object)
    out[FILE] = pd.Series([None] * len(out), dtype=object)
    out[LINE] = pd.Series([pd.NA] * len(out), dtype="Int64")
    return out


def _rejects_as_failed(rejects: pd.DataFrame | None, columns: pd.Index) -> pd.DataFrame:
    """Rejected source rows in the shape of :attr:`GateResult.failed`: no candle values, the verbatim text."""
    n = 0 if rejects is None else len(rejects)
    out = pd.DataFrame({name: pd.Series([None] * n, dtype=DTYPES[name]) for name in columns})
    if rejects is None or not n:
        return out.assign(
            **{
                FAILED_EXPECTATION: pd.Series([], dtype=object),
                REASON: pd.Series([], dtype=object),
                RAW: pd.Series([], dtype=object),
                FILE: pd.Series([], dtype=object),
                LINE: pd.Series([], dtype="Int64"),
            }
        )
    missing = [name for name in ("reason", "raw") if name not in rejects.columns]
    if missing:
        raise ValueError(f"rejects frame lacks column(s) {', '.join(missing)}; build it with rejects_frame()")
    rejects = rejects.reset_index(drop=True)
    if OPEN_TIME in rejects.columns:
        out[OPEN_TIME] = pd.to_datetime(rejects[OPEN_TIME], utc=True).astype(DTYPES[OPEN_TIME])
    out[FAILED_EXPECTATION] = pd.Series([PARSEABLE_ROW] * n, dtype=object)
    out[REASON] = rejects["reason"].astype(object)
    out[RAW] = rejects["raw"].astype(object)
    out[FILE] = rejects[FILE].astype(object) if FILE in rejects.columns else None
    out[LINE] = rejects[LINE].astype("Int64") if LINE in rejects.columns else pd.NA
    return out


def _summary(described: Mapping[str, Any]) -> dict[str, Any]:
    expectations = []
    for entry in described.get("expectations", ()):
        result = {k: v for k, v in (entry.get("result") or {}).items() if k not in _SUMMARY_DROP}
        kwargs = {k: v for k, v in (entry.get("kwargs") or {}).items() if k != "batch_id"}
        expectations.append({**entry, "kwargs": kwargs, "result": result})
    summary = {**described, "expectations": expectations}
    return dict(jsonable(summary))


def jsonable(value: Any) -> Any:
    """``value`` made of JSON types only: non-finite floats as ``"NaN"``/``"Infinity"``/``"-Infinity"``,
    timestamps as ISO strings, NumPy scalars as Python numbers, missing values as ``None``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if number != number:
            return "NaN"
        if number in (float("inf"), float("-inf")):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
