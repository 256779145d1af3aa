"""Use case: backfill one series on a remote Airflow, meaning what the local backfill means.

Only the gaps (the default): a triggered ``ohlcv_gaps`` run for that series and window, which detects, backfills
and records the gaps in the registry exactly as the local command does. ``force``: an Airflow backfill of
``ohlcv_ingest`` over the range, every run re-done. An option the remote workers cannot honour is refused before
anything is created; following the run is optional and ends in its state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from marketkeeper.airflow_api import AirflowClient, DagRun, ProgressCallback
from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError
from marketkeeper.services.markets import MARKETS_VARIABLE, declared_markets, market_label
from marketkeeper.services.policy import DEFAULT_MAX_FAILED_FRACTION
from marketkeeper.timeframes import check_range

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "GAPS_DAG",
    "INGEST_DAG",
    "RemoteBackfillFailedError",
    "RemoteBackfillReport",
    "RemoteBackfillRequest",
    "RemoteMode",
    "RemoteRefusedError",
    "backfill_via_airflow",
    "follow_remote_backfill",
]

#: The DAG that detects, backfills and records one series' gaps (params: markets, start, end, ...).
GAPS_DAG: Final = "ohlcv_gaps"
#: The DAG whose runs ingest one data interval each; ``force`` backfills it.
INGEST_DAG: Final = "ohlcv_ingest"
#: ``ohlcv_ingest``'s data intervals are hours: a forced range starts at the hour holding its start.
INGEST_INTERVAL: Final = timedelta(hours=1)
#: As long as ``ohlcv_gaps`` may run (its ``dagrun_timeout``).
DEFAULT_WAIT_TIMEOUT: Final = 6 * 3600.0
#: Task states that name why a run failed.
_FAILED_TASK_STATES: Final = frozenset({"failed", "upstream_failed"})


class RemoteRefusedError(MarketkeeperError):
    """The request cannot be run on that Airflow as asked (an option that cannot travel, an undeclared series,
    a paused DAG); nothing was created.
    """


class RemoteBackfillFailedError(MarketkeeperError):
    """The followed run (or one of the backfill's runs) failed; ``report`` names the runs and failed tasks."""

    def __init__(self, report: RemoteBackfillReport) -> None:
        super().__init__(report.summary())
        self.report = report


class RemoteMode(enum.StrEnum):
    GAPS = "gaps"
    FORCE = "force"


@dataclass(frozen=True)
class RemoteBackfillRequest:
    """What to backfill remotely; the CLI adapter builds it from its options.

    :param key: the series; it must be declared on that Airflow (Variable ``marketkeeper_markets`` or file).
    :param start: inclusive, timezone-aware.
    :param end: exclusive, timezone-aware.
    :param force: re-ingest the whole range (an ``ohlcv_ingest`` backfill) instead of only its gaps.
    :param retry_source_empty: also retry gaps the source had nothing for (with ``force`` everything is
        fetched again anyway, as locally).
    :param max_failed_fraction: share of rows failing the quality gate above which a window fails.
    :param source: the source the caller asks for; ``None`` (or the declared one) is the only value that can
        travel, because remote workers fetch from the market's declared source.
    """

    key: SeriesKey
    start: datetime
    end: datetime
    force: bool = False
    retry_source_empty: bool = False
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION
    source: str | None = None

    def __post_init__(self) -> None:
        start, end = check_range(self.start, self.end)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise RemoteRefusedError(f"max_failed_fraction must be within [0, 1], got {self.max_failed_fraction}")


@dataclass(frozen=True)
class RemoteBackfillReport:
    """What was asked of Airflow and, when followed, how it ended.

    :param mode: ``gaps`` (a triggered ``ohlcv_gaps`` run) or ``force`` (an ``ohlcv_ingest`` backfill).
    :param dag_id: the DAG that runs it.
    :param conf: the params the run(s) got.
    :param airflow_url: the API server (no credentials), for links.
    :param run_id: the ``ohlcv_gaps`` run (``gaps``).
    :param backfill_id: the Airflow backfill (``force``).
    :param waited: whether the run was followed to its end.
    :param state: ``queued``/``running`` when not followed; after following ``success`` or ``failed``.
    :param runs: the runs in their last known states (one for ``gaps``).
    :param failed_tasks: ``run_id: task[map]`` of every failed (or upstream-failed) task.
    """

    mode: RemoteMode
    key: SeriesKey
    start: datetime
    end: datetime
    dag_id: str
    conf: Mapping[str, Any]
    airflow_url: str
    run_id: str | None = None
    backfill_id: int | None = None
    waited: bool = False
    state: str = "queued"
    runs: tuple[DagRun, ...] = ()
    failed_tasks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Followed and succeeded."""
        return self.waited and self.state == "success"

    @property
    def follow_url(self) -> str:
        """Where to watch it in the Airflow UI."""
        if self.run_id is not None:
            return f"{self.airflow_url}/dags/{self.dag_id}/runs/{self.run_id}"
        return f"{self.airflow_url}/dags/{self.dag_id}/backfills"

    @property
    def subject(self) -> str:
        if self.run_id is not None:
            return f"{self.dag_id} run {self.run_id}"
        return f"backfill {self.backfill_id} of {self.dag_id}"

    def summary(self) -> str:
        """One line: what runs where, and how it ended."""
        what = f"{self.key} [{self.start.isoformat()}, {self.end.isoformat()}) {'forced' if self.force else 'gaps'}"
        if not self.waited:
            return f"{what}: {self.subject} {self.state} on {self.airflow_url}; follow it at {self.follow_url}"
        line = f"{what}: {self.subject} ended {self.state}"
        if self.mode is RemoteMode.FORCE:
            done = sum(run.state == "success" for run in self.runs)
            line += f" ({done}/{len(self.runs)} run(s) succeeded)"
        failed_runs = [run.run_id for run in self.runs if run.state != "success"]
        if self.state != "success" and self.mode is RemoteMode.FORCE and failed_runs:
            line += f"; not succeeded: {', '.join(failed_runs[:5])}" + (" ..." if len(failed_runs) > 5 else "")
        if self.failed_tasks:
            shown = ", ".join(self.failed_tasks[:5]) + (" ..." if len(self.failed_tasks) > 5 else "")
            line += f"; failed task(s): {shown}"
        return f"{line}; see {self.follow_url}"

    @property
    def force(self) -> bool:
        return self.mode is RemoteMode.FORCE


def _refuse_untravelable(client: AirflowClient, request: RemoteBackfillRequest) -> None:
    """Refuse what the remote workers cannot honour, before anything is created."""
    override = client.get_variable(MARKETS_VARIABLE)
    origin = f"Airflow Variable {MARKETS_VARIABLE}" if override else "the markets file"
    specs = declared_markets(override)
    spec = next((s for s in specs if s.key == request.key), None)
    if spec is None:
        declared = ", ".join(market_label(s) for s in specs) or "none"
        raise RemoteRefusedError(
            f"{request.key} is not declared in {origin} on Airflow at {client.display_url}, so its workers cannot "
            f"backfill it (declared: {declared})"
        )
    if request.source is not None and request.source != spec.source:
        raise RemoteRefusedError(
            f"source {request.source!r} cannot travel to Airflow: its workers fetch {request.key} from the declared "
            f"source {spec.source!r} ({origin}); leave the source out or change the declaration"
        )


def _refuse_unrunnable(client: AirflowClient, dag_id: str) -> None:
    dag = client.get_dag(dag_id)
    if dag.is_paused:
        raise RemoteRefusedError(
            f"DAG {dag_id} is paused on Airflow at {client.display_url}: unpause it first, or its run never starts"
        )


def backfill_via_airflow(
    client: AirflowClient,
    request: RemoteBackfillRequest,
    *,
    wait: bool,
    progress: ProgressCallback | None = None,
    timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    poll: float = 2.0,
) -> RemoteBackfillReport:
    """Run ``request`` on the Airflow behind ``client``; with ``wait``, follow it to its end.

    Gaps only: triggers ``ohlcv_gaps`` with params ``markets=[series]``, ``start``, ``end`` (ISO 8601),
    ``retry_source_empty`` and ``max_failed_fraction``. ``force``: creates a backfill of ``ohlcv_ingest`` from
    the hour holding ``start`` to ``end`` (Airflow's ``to_date`` is inclusive, so candles closing at ``end`` are
    covered), ``reprocess_behavior="completed"``, conf ``markets`` and ``max_failed_fraction``.

    :param wait: follow the run (or every run of the backfill) until it finishes.
    :param progress: called with each change seen while following.
    :param timeout: seconds to follow at most (``None``: no limit).
    :raises RemoteRefusedError: an option cannot travel, the series is not declared there, or the DAG is
        paused; nothing was created.
    :raises RemoteBackfillFailedError: followed, and the run (or a run of the backfill) did not succeed.
    :raises AirflowWaitTimeoutError: followed, and still running after ``timeout`` (it goes on).
    :raises AirflowAPIError: Airflow refused a request or did not answer (e.g. bad credentials).
    """
    _refuse_untravelable(client, request)
    label = str(request.key)
    if request.force:
        _refuse_unrunnable(client, INGEST_DAG)
        conf: dict[str, Any] = {"markets": [label], "max_failed_fraction": request.max_failed_fraction}
        first_run = request.start.replace(minute=0, second=0, microsecond=0)
        backfill = client.create_backfill(INGEST_DAG, first_run, request.end, conf=conf, reprocess_behavior="completed")
        report = RemoteBackfillReport(
            mode=RemoteMode.FORCE,
            dag_id=INGEST_DAG,
            conf=conf,
            backfill_id=backfill.id,
            state="completed" if backfill.completed else "running",
            key=request.key,
            start=request.start,
            end=request.end,
            airflow_url=client.display_url,
        )
    else:
        _refuse_unrunnable(client, GAPS_DAG)
        conf = {
            "markets": [label],
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "retry_source_empty": request.retry_source_empty,
            "max_failed_fraction": request.max_failed_fraction,
        }
        run = client.trigger_dag_run(
            GAPS_DAG,
            conf=conf,
            note=f"marketkeeper backfill {label} [{request.start.isoformat()}, {request.end.isoformat()})",
        )
        report = RemoteBackfillReport(
            mode=RemoteMode.GAPS,
            dag_id=GAPS_DAG,
            conf=conf,
            run_id=run.run_id,
            state=run.state,
            runs=(run,),
            key=request.key,
            start=request.start,
            end=request.end,
            airflow_url=client.display_url,
        )
    if not wait:
        return report
    return follow_remote_backfill(client, report, progress=progress, timeout=timeout, poll=poll)


def follow_remote_backfill(
    client: AirflowClient,
    report: RemoteBackfillReport,
    *,
    progress: ProgressCallback | None = None,
    timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    poll: float = 2.0,
) -> RemoteBackfillReport:
    """Follow what ``report`` submitted until it ends; returns the final report when it succeeded.

    :raises RemoteBackfillFailedError: the run, or a run of the backfill, did not succeed (failed tasks named).
    :raises AirflowWaitTimeoutError: still running after ``timeout`` seconds (nothing is cancelled).
    """
    if report.run_id is not None:
        run = client.wait_for_dag_run(report.dag_id, report.run_id, timeout=timeout, poll=poll, progress=progress)
        runs: tuple[DagRun, ...] = (run,)
        state = run.state
    elif report.backfill_id is not None:
        _, listed = client.wait_for_backfill(report.backfill_id, timeout=timeout, poll=poll, progress=progress)
        runs = tuple(listed)
        state = "success" if runs and all(r.state == "success" for r in runs) else "failed"
    else:
        raise RemoteRefusedError(f"{report.key}: the report names neither a run nor a backfill to follow")
    failed = tuple(
        f"{run.run_id}: {ti.label} ({ti.state})"
        for run in runs
        if run.state != "success"
        for ti in client.task_instances(run.dag_id, run.run_id)
        if ti.state in _FAILED_TASK_STATES
    )
    final = replace(report, waited=True, state=state, runs=runs, failed_tasks=failed)
    if state != "success":
        raise RemoteBackfillFailedError(final)
    return final
