"""The Great Expectations plumbing of the gate: the context and checkpoints built from the suite, one run of
a batch through them, and the run's results read back as outcomes, failing rows and a JSON-able summary.

Every batch goes through the same suite twice at most: first with the ``BOOLEAN_ONLY`` result format (about
half the fixed cost of a run, and no per-row lists built), and only when an expectation failed again with
``COMPLETE`` and the row numbers, so the failing rows are named by Great Expectations itself, exactly. A clean
batch, the usual case, pays for the cheap run only. A batch of markets pays even less: :func:`screen_union`
screens all its windows of one timeframe in one ``BOOLEAN_ONLY`` run (a run's fixed cost is ~0.2 s, its cost
per row small), and only a union that failed has its windows run one by one.

Great Expectations is imported by :func:`checkpoint`, on the first batch, never on import (it costs seconds).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.quality.jsonable import jsonable
from marketkeeper.quality.suite import CHECKS, ROW, SUITE_NAME, UNION_CHECKS, Check, ExpectationOutcome

if TYPE_CHECKING:
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.data_context import AbstractDataContext

__all__ = ["GateEvaluationError", "SuiteRun", "checkpoint", "passed_run", "run_suite", "screen_union"]

# GX's own cap on the example values it reports; the complete lists go to quarantine, not to the summary.
_SUMMARY_DROP: Final = ("unexpected_list", "unexpected_index_list", "partial_unexpected_index_list")

_RUN_LOCK = threading.Lock()
#: The suite and checkpoint of a union of windows (see :func:`screen_union`).
UNION_SUITE_NAME: Final = f"{SUITE_NAME}_union"


class GateEvaluationError(MarketkeeperError):
    """Great Expectations could not evaluate an expectation, so the batch was not judged at all."""


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """What one checkpoint run found."""

    #: One outcome per check of :data:`~marketkeeper.quality.suite.CHECKS`, in suite order.
    outcomes: tuple[ExpectationOutcome, ...]
    #: The checks each failing row broke, by the row's :data:`~marketkeeper.quality.suite.ROW` number.
    findings: dict[int, list[Check]]
    #: The validation result, JSON-able, without the complete unexpected-value lists.
    summary: dict[str, Any]


def _require_analytics_off() -> None:
    value = os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if value.strip().lower() not in ("false", "0", "no", "off"):
        raise ConfigurationError(
            f"GX_ANALYTICS_ENABLED is {value!r}; marketkeeper runs Great Expectations with analytics off "
            "(GX_ANALYTICS_ENABLED=False): it must not phone home from data pipelines"
        )


@dataclass(frozen=True, slots=True)
class _Checkpoints:
    context: AbstractDataContext
    #: ``BOOLEAN_ONLY``: whether each expectation held, at the least cost.
    screen: Checkpoint
    #: ``COMPLETE`` with the row numbers of every unexpected row: run only on a batch the screen failed.
    complete: Checkpoint
    #: ``BOOLEAN_ONLY`` over a union of several series' windows (:data:`~marketkeeper.quality.suite.UNION_CHECKS`).
    union: Checkpoint


def checkpoint() -> tuple[AbstractDataContext, Checkpoint]:
    """The process's context and its screening checkpoint: building them is slow; the batch is a run parameter.

    :raises ConfigurationError: ``GX_ANALYTICS_ENABLED`` is set to anything but off.
    """
    built = _checkpoints()
    return built.context, built.screen


@lru_cache(maxsize=1)
def _checkpoints() -> _Checkpoints:
    _require_analytics_off()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX pins this module's logger to INFO on import, so every process would announce its ephemeral docs site
    # on stderr whatever the application's log level; let it follow its parent instead.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)
    context = gx.get_context(mode="ephemeral")
    # tqdm bars would flood Airflow task logs, one per batch.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    pandas = context.data_sources.add_pandas("marketkeeper")
    batch = pandas.add_dataframe_asset(SUITE_NAME).add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for check in CHECKS:
        expectation_class = getattr(gxe, check.gx_class)
        suite.add_expectation(expectation_class(**check.kwargs, meta={"check": check.name}))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    screen = context.checkpoints.add(
        gx.Checkpoint(
            name=SUITE_NAME, validation_definitions=[definition], result_format={"result_format": "BOOLEAN_ONLY"}
        )
    )
    complete = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{SUITE_NAME}_complete",
            validation_definitions=[definition],
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [ROW],
                "return_unexpected_index_query": False,
            },
        )
    )
    union_batch = pandas.add_dataframe_asset(UNION_SUITE_NAME)
    union_suite = context.suites.add(gx.ExpectationSuite(name=UNION_SUITE_NAME))
    for check in UNION_CHECKS:
        union_suite.add_expectation(getattr(gxe, check.gx_class)(**check.kwargs, meta={"check": check.name}))
    union_definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=UNION_SUITE_NAME, data=union_batch.add_batch_definition_whole_dataframe("batch"), suite=union_suite
        )
    )
    union = context.checkpoints.add(
        gx.Checkpoint(
            name=UNION_SUITE_NAME,
            validation_definitions=[union_definition],
            result_format={"result_format": "BOOLEAN_ONLY"},
        )
    )
    return _Checkpoints(context, screen, complete, union)


def _run(
    context: AbstractDataContext, built: Checkpoint, batch: pd.DataFrame, parameters: Mapping[str, Any]
) -> ExpectationSuiteValidationResult:
    """The one suite result of running ``batch`` through ``built``."""
    with _RUN_LOCK:
        run = built.run(batch_parameters={"dataframe": batch}, expectation_parameters=dict(parameters))
        # The ephemeral context keeps every result in memory; the ledger is where results are kept, so a
        # long ingestion would otherwise grow by one complete result per batch.
        for identifier in run.run_results:
            context.validation_results_store.remove_key(identifier)
    [suite_result] = run.run_results.values()
    return suite_result


def _by_check(suite_result: ExpectationSuiteValidationResult) -> dict[str, ExpectationValidationResult]:
    by_name = {
        str((r.expectation_config.meta or {}).get("check")): r for r in suite_result.results if r.expectation_config
    }
    for check in CHECKS:
        if check.name not in by_name:
            raise GateEvaluationError(f"the candles suite returned no result for {check.name}")
    return by_name


def run_suite(batch: pd.DataFrame, parameters: Mapping[str, Any]) -> SuiteRun:
    """Run ``batch`` through the screening checkpoint, and through the complete one if an expectation failed.

    :param batch: the batch as :func:`~marketkeeper.quality.suite.suite_batch` builds it.
    :param parameters: the suite parameters of this batch.
    :raises GateEvaluationError: an expectation could not be evaluated or gave no usable result.
    """
    built = _checkpoints()
    screened = _run(built.context, built.screen, batch, parameters)
    by_name = _by_check(screened)
    for check in CHECKS:
        _raise_if_errored(check, by_name[check.name])
    if all(by_name[check.name].success for check in CHECKS):
        # Every expectation held (no "mostly" in the suite): no row is unexpected, nothing more to ask GX.
        return passed_run(_summary(screened.describe_dict()))

    suite_result = _run(built.context, built.complete, batch, parameters)
    by_name = _by_check(suite_result)
    outcomes_found: list[ExpectationOutcome] = []
    findings: dict[int, list[Check]] = {}
    for check in CHECKS:
        evaluated = by_name[check.name]
        _raise_if_errored(check, evaluated)
        rows = [int(entry[ROW]) for entry in evaluated.result.get("unexpected_index_list") or ()]
        if not evaluated.success and not rows:
            raise GateEvaluationError(f"{check.name} failed without naming the rows: {evaluated.result}")
        for row in rows:
            findings.setdefault(row, []).append(check)
        outcomes_found.append(
            ExpectationOutcome(check.name, check.expectation_type, check.columns, bool(evaluated.success), len(rows))
        )
    return SuiteRun(tuple(outcomes_found), findings, _summary(suite_result.describe_dict()))


def passed_run(summary: dict[str, Any]) -> SuiteRun:
    """The run of a batch that met every expectation of the suite, with ``summary`` as its evidence."""
    outcomes = tuple(ExpectationOutcome(c.name, c.expectation_type, c.columns, True, 0) for c in CHECKS)
    return SuiteRun(outcomes, {}, summary)


def screen_union(batch: pd.DataFrame, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """Screen a union of several series' windows of one timeframe in one run (``BOOLEAN_ONLY``).

    :param batch: the windows' suite batches (:func:`~marketkeeper.quality.suite.suite_batch`, one ``now``)
        joined, each numbered in :data:`~marketkeeper.quality.suite.SERIES`.
    :param parameters: their (common) suite parameters.
    :returns: the run's summary when every expectation held, so every window meets the suite; ``None`` when
        one failed or could not be evaluated: then each window must be judged on its own (and fails there).
    """
    built = _checkpoints()
    screened = _run(built.context, built.union, batch, parameters)
    by_name = {str((r.expectation_config.meta or {}).get("check")): r for r in screened.results if r.expectation_config}
    held = all(
        check.name in by_name
        and by_name[check.name].success
        and not (by_name[check.name].exception_info or {}).get("raised_exception")
        for check in UNION_CHECKS
    )
    return _summary(screened.describe_dict()) if held else None


def _raise_if_errored(check: Check, evaluated: ExpectationValidationResult) -> None:
    info = evaluated.exception_info or {}
    # GX 1.x reports either one flat dict or one dict per metric that raised.
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(e.get("exception_message")) for e in entries if e.get("raised_exception")]
    if messages:
        raise GateEvaluationError(f"Great Expectations could not evaluate {check.name}: {'; '.join(messages)}")


def _summary(described: Mapping[str, Any]) -> dict[str, Any]:
    expectations = []
    for entry in described.get("expectations", ()):
        result = {k: v for k, v in (entry.get("result") or {}).items() if k not in _SUMMARY_DROP}
        kwargs = {k: v for k, v in (entry.get("kwargs") or {}).items() if k != "batch_id"}
        expectations.append({**entry, "kwargs": kwargs, "result": result})
    summary = {**described, "expectations": expectations}
    return dict(jsonable(summary))
