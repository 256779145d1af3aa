"""The ops wiring every DAG shares: the task-level failure callback, and the ops_monitor schedule."""

from __future__ import annotations

from typing import Any

import pytest

from marketkeeper.airflow.dag_glue import on_task_failure, on_task_success
from tests.dags.test_dag_integrity import DAGS_FOLDER


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=DAGS_FOLDER)


def test_every_task_of_every_dag_turns_its_failure_into_an_alert_and_its_success_resolves_it(dagbag: Any) -> None:
    assert "ops_monitor" in dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert on_task_failure in callbacks, f"{dag_id}.{task.task_id} has no failure alert"
            successes = task.on_success_callback
            successes = successes if isinstance(successes, list) else [successes]
            assert on_task_success in successes, f"{dag_id}.{task.task_id} never resolves its failure alerts"


def test_ops_monitor_runs_every_five_minutes_one_run_at_a_time(dagbag: Any) -> None:
    dag = dagbag.dags["ops_monitor"]
    assert dag.task_ids == ["evaluate"]
    assert dag.timetable.expression == "*/5 * * * *" and dag.max_active_runs == 1 and not dag.catchup
