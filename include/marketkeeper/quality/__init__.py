"""The candle quality gate: every batch passes a Great Expectations checkpoint before it is stored.

:func:`check_candles` judges a batch, :func:`record_gate` writes the evidence to the ledger and
:func:`enforce_threshold` fails the task when too much of the batch is bad, in that order.
Great Expectations itself is imported on the first :func:`check_candles` call, not on import.

The package's modules, one idea each: ``suite`` (the expectations and their explanations), ``gx`` (Great
Expectations plumbing), ``split`` (passed, failed and skipped rows), ``gate`` (the two entry points and their
result), ``store`` (the ledger evidence), ``escape`` (text PostgreSQL refuses), ``jsonable`` (JSON values).
"""

from __future__ import annotations

from marketkeeper.quality.gate import (
    MAX_TRADE_COUNT,
    MAX_VALUE,
    PARSEABLE_ROW,
    SUITE_NAME,
    ExpectationOutcome,
    GateEvaluationError,
    GateResult,
    QualityGateError,
    check_candles,
    check_windows,
    enforce_threshold,
)
from marketkeeper.quality.store import QualityStoreError, raw_row, record_gate

__all__ = [
    "MAX_TRADE_COUNT",
    "MAX_VALUE",
    "PARSEABLE_ROW",
    "SUITE_NAME",
    "ExpectationOutcome",
    "GateEvaluationError",
    "GateResult",
    "QualityGateError",
    "QualityStoreError",
    "check_candles",
    "check_windows",
    "enforce_threshold",
    "raw_row",
    "record_gate",
]
