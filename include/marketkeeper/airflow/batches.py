"""The Airflow side of a batch of markets (:mod:`marketkeeper.services.batch`): the batches a run maps over,
the map-index label naming a batch's markets, the checkpoint a retry resumes from, and the end of a batch task
(Asset events for every completed market, the failed ones named in the label, the log and XCom, then a failure).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypedDict

from marketkeeper.errors import ConfigurationError
from marketkeeper.markets import MarketSpec
from marketkeeper.services.batch import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    BatchReport,
    Checkpoint,
    batch_markets,
)
from marketkeeper.services.markets import market_label

__all__ = [
    "BATCH_SIZE_ENV",
    "MarketBatch",
    "MarketResult",
    "batch_size",
    "checkpoint_for",
    "finish_batch",
    "plan_batches",
]

log = logging.getLogger("airflow.task")

#: Markets per mapped task when a run's ``batch_size`` param is empty.
BATCH_SIZE_ENV: Final = "MARKETKEEPER_BATCH_SIZE"
#: Airflow keeps 250 characters of a rendered map index.
LABEL_CHARS: Final = 250


class MarketBatch(TypedDict):
    """One mapped task's input: its label and its markets (as XCom-able dicts)."""

    label: str
    markets: list[dict[str, Any]]


class MarketResult(TypedDict):
    """What a batch task keeps of one completed market: its XCom summary and its Asset events."""

    summary: dict[str, Any]
    events: list[dict[str, Any]]


def batch_size(requested: object = None) -> int:
    """Markets per task: the run's ``batch_size`` param, else ``MARKETKEEPER_BATCH_SIZE``, else the default.

    :raises ConfigurationError: the value is not an integer from 1 to the maximum.
    """
    raw = requested if requested not in (None, "") else os.environ.get(BATCH_SIZE_ENV, "").strip() or None
    if raw is None:
        return DEFAULT_BATCH_SIZE
    try:
        size = int(str(raw))
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise ConfigurationError(f"batch size must be an integer from 1 to {MAX_BATCH_SIZE}, got {raw!r}")
    return size


def _label(specs: Sequence[MarketSpec]) -> str:
    """``exchange: symbol:tf, symbol:tf, ...``, cut to fit Airflow's column with the count of the rest."""
    names = [market_label(s).split(":", 1)[1] for s in specs]
    head = f"{specs[0].exchange} ({len(specs)}): " if len(specs) > 1 else f"{specs[0].exchange}:"
    return _fit(head, names)


def _fit(head: str, names: Sequence[str]) -> str:
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        more = f", +{rest} more" if rest else ""
        if len(head) + len(", ".join([*shown, name])) + len(more) > LABEL_CHARS:
            return head + ", ".join(shown) + f", +{len(names) - i} more"
        shown.append(name)
    return head + ", ".join(shown)


def plan_batches(markets: Sequence[Mapping[str, Any]], size: int) -> list[MarketBatch]:
    """The planned markets cut into the batches a run maps over (one exchange per batch)."""
    specs = [MarketSpec.model_validate(m) for m in markets]
    return [
        {"label": _label(batch), "markets": [s.model_dump(mode="json") for s in batch]}
        for batch in batch_markets(specs, size)
    ]


def checkpoint_for(context: Mapping[str, Any], keep: Callable[[Any], MarketResult]) -> Checkpoint:
    """The checkpoint of this task instance: records match its dag, run, task and map index, across tries."""
    ti = context["ti"]
    scope = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": str(ti.map_index)}
    return Checkpoint(scope=scope, attempt=int(ti.try_number), keep=lambda report: dict(keep(report)))


def finish_batch(
    context: Mapping[str, Any], batch: Mapping[str, Any], report: BatchReport[Any], keep: Callable[[Any], MarketResult]
) -> list[dict[str, Any]]:
    """Emit the Asset events of every completed market and return their summaries (the task's XCom).

    When a market failed, the map label starts with the failed markets, the log and the ``failed`` XCom name
    each with its cause, and :class:`~marketkeeper.services.batch.BatchFailedError` fails the task after the
    others' events were emitted (a retry redoes the failed markets only, see :func:`checkpoint_for`).
    """
    from marketkeeper.airflow.dag_glue import emit_asset_events, set_map_label

    results: list[MarketResult] = []
    for outcome in report.outcomes:
        if outcome.recorded is not None:
            results.append(MarketResult(summary=outcome.recorded["summary"], events=outcome.recorded["events"]))
        elif outcome.ok:
            results.append(keep(outcome.report))
    # A failed try's events are dropped by Airflow: they are emitted again by the retry, from its checkpoint.
    emit_asset_events(context, [event for r in results for event in r["events"]])
    failed = report.failed
    if failed:
        for outcome in failed:
            log.error("%s failed: %s", outcome.label, outcome.error)
        set_map_label(_fit(f"FAILED {len(failed)}/{len(report.outcomes)}: ", [o.label for o in failed]))
        context["ti"].xcom_push("failed", [{"market": o.label, "error": o.error} for o in failed])
        report.raise_for_failures()
    set_map_label(batch["label"])
    return [r["summary"] for r in results]
