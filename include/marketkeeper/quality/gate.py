"""The quality gate: :func:`check_candles` judges a batch of candles against the suite, and
:func:`enforce_threshold` fails the task when too much of it is bad.

What the suite expects is in :mod:`marketkeeper.quality.suite`, how Great Expectations runs it in
:mod:`marketkeeper.quality.gx`, and how a batch is split into stored, quarantined and skipped rows in
:mod:`marketkeeper.quality.split`. Nothing is dropped silently:
``len(passed) + len(failed) + rows_skipped == rows_checked``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from marketkeeper.candles import OPEN_TIME, SeriesKey
from marketkeeper.errors import MarketkeeperError, format_range
from marketkeeper.quality.gx import GateEvaluationError, SuiteRun, passed_run, run_suite, screen_union
from marketkeeper.quality.split import (
    FAILED_EXPECTATION,
    FILE,
    LINE,
    RAW,
    REASON,
    Batch,
    prepare,
    rejects_as_failed,
    split,
)
from marketkeeper.quality.suite import (
    MAX_TRADE_COUNT,
    MAX_VALUE,
    PARSEABLE_ROW,
    SERIES,
    SUITE_NAME,
    ExpectationOutcome,
    ExplainContext,
    suite_batch,
)
from marketkeeper.timeframes import check_range, ensure_utc

log = logging.getLogger(__name__)

__all__ = [
    "FAILED_EXPECTATION",
    "FILE",
    "LINE",
    "MAX_TRADE_COUNT",
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
    "check_windows",
    "enforce_threshold",
]


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
            f"quality gate failed for {key} over {format_range(start, end)}: "
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


@dataclass(frozen=True, slots=True, eq=False)
class GateResult:
    """A batch judged by :func:`check_candles`.

    ``passed`` holds the good rows in the canonical candle shape, ready to store. ``failed`` holds the bad
    rows with their values as received (``trade_count`` as objects, so 1.5 stays 1.5) plus
    ``failed_expectation`` (every expectation the row broke, joined by ``"; "``), ``reason`` (one sentence
    per broken expectation, same order) and, for rejected source rows, ``raw``, ``file`` and ``line``.
    ``skipped`` holds identical duplicates of rows kept in ``passed`` or ``failed``. ``success`` is True only
    when every row passed; the threshold is :func:`enforce_threshold`'s.
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
    :raises CandleFrameError: ``frame`` lacks a candle column, holds text, or has naive open times.
    """
    window = _Window.of(key, frame, now=now, max_failed_fraction=max_failed_fraction, rejects=rejects)
    return window.judged(run_suite(window.suite, window.parameters))


def check_windows(
    windows: Sequence[tuple[SeriesKey, pd.DataFrame, pd.DataFrame | None]],
    *,
    now: datetime,
    max_failed_fraction: float = 0.01,
) -> list[GateResult | Exception]:
    """:func:`check_candles` of several series' windows (``(key, frame, rejects)``), with one Great
    Expectations run over all windows of one timeframe instead of one run each.

    The union is screened by :data:`~marketkeeper.quality.suite.UNION_CHECKS` (the suite, with open times
    unique per series): when it holds, every window meets the whole suite, and each window's result is what
    :func:`check_candles` would return, its summary that of the union's run. When the union fails anywhere, each
    window of it is judged on its own by :func:`check_candles`, so failing rows are still named exactly.

    :returns: one result per window, in order; the exception instead where a window could not be judged (a
        malformed frame, an expectation GX could not evaluate), for its caller to raise in its own time.
    """
    results: list[GateResult | Exception | None] = [None] * len(windows)
    prepared: dict[int, _Window] = {}
    for i, (key, frame, rejects) in enumerate(windows):
        try:
            prepared[i] = _Window.of(key, frame, now=now, max_failed_fraction=max_failed_fraction, rejects=rejects)
        except Exception as exc:  # this window's own failure, handed back to its caller (who raises it)
            results[i] = exc
    by_timeframe: dict[str, list[int]] = {}
    for i, window in prepared.items():
        by_timeframe.setdefault(str(window.key.timeframe), []).append(i)
    for members in by_timeframe.values():
        screened = _screened_union([prepared[i] for i in members]) if len(members) > 1 else None
        for i in members:
            window = prepared[i]
            try:
                if screened is None:
                    results[i] = window.judged(run_suite(window.suite, window.parameters))
                else:
                    results[i] = window.judged(passed_run(screened))
            except Exception as exc:  # as above: the window's own outcome
                results[i] = exc
    return [r for r in results if r is not None]


def _screened_union(windows: Sequence[_Window]) -> dict[str, Any] | None:
    """The summary of one screening run over ``windows`` (one timeframe, one ``now``) when the union met every
    expectation; ``None`` when it did not, or the run itself failed: then each window is judged alone, and a
    failure that is a window's own is raised there."""
    union = pd.concat([w.suite.assign(**{SERIES: n}) for n, w in enumerate(windows)], ignore_index=True)
    try:
        summary = screen_union(union, windows[0].parameters)
    except Exception as exc:  # not swallowed: every window is then run through the suite on its own
        log.warning("screening %d windows together failed (%s); each is checked alone", len(windows), exc)
        return None
    return None if summary is None else {**summary, "union": {"windows": len(windows), "rows": len(union)}}


@dataclass(frozen=True, slots=True)
class _Window:
    """A window ready for the suite: the batch as the suite reads it, and what its result is made from."""

    key: SeriesKey
    now: datetime
    max_failed_fraction: float
    batch: Batch
    rejected: pd.DataFrame
    suite: pd.DataFrame
    parameters: dict[str, Any]

    @classmethod
    def of(
        cls,
        key: SeriesKey,
        frame: pd.DataFrame,
        *,
        now: datetime,
        max_failed_fraction: float,
        rejects: pd.DataFrame | None,
    ) -> _Window:
        now = ensure_utc(now, "now")
        fraction = _check_fraction(max_failed_fraction)
        batch = prepare(frame)
        rejected = rejects_as_failed(rejects, batch.candles.columns)
        suite, parameters = suite_batch(batch.candles, batch.trade_counts, key.timeframe, now)
        return cls(key, now, fraction, batch, rejected, suite, parameters)

    def judged(self, checked: SuiteRun) -> GateResult:
        """The window's result from what the suite found."""
        key, batch, rejected = self.key, self.batch, self.rejected
        candles = batch.candles
        outcomes = (
            *checked.outcomes,
            ExpectationOutcome(PARSEABLE_ROW, PARSEABLE_ROW, (), not len(rejected), len(rejected)),
        )
        # The copies of each open time explain a duplicate; counting them costs a pass over the batch, so only
        # a batch with failing rows pays for it.
        copies = candles[OPEN_TIME].value_counts() if checked.findings else pd.Series([], dtype="int64")
        ctx = ExplainContext(key.timeframe, self.now, copies)
        passed, failed = split(batch, checked.findings, ctx)
        if len(rejected):
            failed = pd.concat([failed, rejected], ignore_index=True) if len(failed) else rejected

        rows_checked = len(candles) + len(batch.skipped) + len(rejected)
        if len(passed) + len(failed) + len(batch.skipped) != rows_checked:
            # A bug, not bad data: the batch would be stored with rows missing from both store and quarantine.
            raise GateEvaluationError(
                f"the gate lost rows for {key}: {rows_checked} checked, {len(passed)} passed, {len(failed)} "
                f"failed, {len(batch.skipped)} skipped"
            )
        return GateResult(
            key=key,
            now=self.now,
            passed=passed,
            failed=failed,
            skipped=batch.skipped,
            results=outcomes,
            rows_checked=rows_checked,
            rows_failed=len(failed),
            rows_skipped=len(batch.skipped),
            success=not len(failed),
            max_failed_fraction=self.max_failed_fraction,
            summary=checked.summary,
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
