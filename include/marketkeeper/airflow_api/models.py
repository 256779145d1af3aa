"""What the Airflow REST client returns: DAGs, runs, task instances, backfills and the progress of a wait."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "FINISHED_RUN_STATES",
    "Backfill",
    "DagInfo",
    "DagRun",
    "ProgressCallback",
    "ReprocessBehavior",
    "TaskInstance",
    "WaitProgress",
]

#: ``none``: only intervals without a run; ``failed``: also failed runs; ``completed``: every run again.
ReprocessBehavior = Literal["none", "failed", "completed"]
#: DAG run states after which nothing more happens to the run.
FINISHED_RUN_STATES: Final = frozenset({"success", "failed"})


@dataclass(frozen=True)
class DagInfo:
    """What the client needs to know about a DAG before asking it to run."""

    dag_id: str
    is_paused: bool
    has_import_errors: bool


@dataclass(frozen=True)
class DagRun:
    """One DAG run as ``/api/v2/dags/{dag_id}/dagRuns`` shows it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    logical_date: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES


@dataclass(frozen=True)
class TaskInstance:
    """One task instance of a run; ``label`` reads ``task_id[map label]`` for a mapped task."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    rendered_map_index: str | None = None

    @property
    def label(self) -> str:
        if self.map_index < 0:
            return self.task_id
        return f"{self.task_id}[{self.rendered_map_index or self.map_index}]"


@dataclass(frozen=True)
class Backfill:
    """A backfill as ``/api/v2/backfills`` shows it; ``completed_at`` is set once all its runs have finished."""

    id: int
    dag_id: str
    from_date: str
    to_date: str
    reprocess_behavior: str
    is_paused: bool = False
    completed_at: str | None = None
    dag_run_conf: Mapping[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.completed_at is not None


@dataclass(frozen=True)
class WaitProgress:
    """What a followed run or backfill looks like now; ``str()`` is one line for a terminal.

    :param subject: ``ohlcv_gaps run manual__...`` or ``backfill 7 of ohlcv_ingest``.
    :param state: the run's state, or the backfill's (``running``/``completed``).
    :param counts: task instance states of the run, or run states of the backfill, with how many of each.
    :param elapsed: seconds since following started.
    """

    subject: str
    state: str
    counts: Mapping[str, int]
    elapsed: float

    def __str__(self) -> str:
        counted = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items())) or "nothing scheduled yet"
        return f"{self.subject}: {self.state} ({counted}) after {self.elapsed:.0f}s"


ProgressCallback = Callable[[WaitProgress], None]
