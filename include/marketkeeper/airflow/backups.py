"""The Airflow side of the ``backups`` and ``restore_drill`` tasks: the stores a run covers and one service call
per store, with the stores of the Airflow Connections (:func:`marketkeeper.airflow.stores.store_config`); the
same :mod:`marketkeeper.services.backups` functions ``marketkeeper backup run`` and ``backup drill`` call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, task

if TYPE_CHECKING:
    from marketkeeper.store_set import StoreConfig

#: :data:`marketkeeper.services.backups.STORES`, spelled out so that parsing a DAG file imports no backup tool
#: (``tests/dags/test_backup_dags.py`` keeps the two equal).
STORE_NAMES = ("ledger", "influxdb", "redis")


def stores_param(doing: str) -> Param:
    """The trigger form's ``stores`` field of the ``backups`` and ``restore_drill`` DAGs."""
    return Param(
        [],
        type="array",
        items={"type": "string", "enum": list(STORE_NAMES)},
        title="Stores",
        description=f"ledger, influxdb, redis: the stores to {doing}; empty = every store (unconfigured: skipped).",
    )


@task(task_id="plan")
def plan(**context: Any) -> list[str]:
    """The stores this run covers: every one, or those asked for (one without a Connection fails the run at once)."""
    from marketkeeper.airflow.dag_glue import fail_fast

    with fail_fast():
        return plan_stores(context["params"]["stores"])


def plan_stores(selected: Sequence[str] = ()) -> list[str]:
    """The stores to cover: ``selected`` (each must be configured), or every store (the mapped task of one
    that is not configured skips itself, saying why).

    :raises ConfigurationError: a selected store is unknown or has no Connection.
    """
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.backups import STORES, select_stores

    return select_stores(store_config(), selected) if selected else list(STORES)


def _skip_unconfigured(config: StoreConfig, store: str) -> None:
    """Skip this task (not a failure) when ``store`` is not configured here."""
    from airflow.sdk.exceptions import AirflowSkipException

    from marketkeeper.services.backups import unconfigured

    if (skipped := unconfigured(config, store)) is not None:
        raise AirflowSkipException(str(skipped))


def backup_store(store: str) -> dict[str, Any]:
    """Back ``store`` up; its ``backup_runs`` row as XCom.

    :raises BackupError: the backup failed (the row says why): the task fails, and is retried.
    :raises AirflowFailException: the server cannot be backed up this way: no retry can change that.
    :raises AirflowSkipException: ``store`` is not configured here (no row is written).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from marketkeeper.airflow.stores import store_config
    from marketkeeper.backups.errors import BackupNotSupportedError
    from marketkeeper.services.backups import run_backup

    config = store_config()
    _skip_unconfigured(config, store)
    try:
        return run_backup(config, store).as_dict()
    except BackupNotSupportedError as exc:
        raise AirflowFailException(str(exc)) from exc


def drill_store(store: str) -> dict[str, Any]:
    """Drill ``store``'s newest complete backup; the outcome as XCom.

    :raises AirflowFailException: the drill failed, naming the store and the first difference. A drill's
        verdict is recorded on the backup's row; retrying the same backup would only repeat it.
    :raises AirflowSkipException: ``store`` is not configured here, or has no backup yet to drill.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from marketkeeper.airflow.stores import store_config
    from marketkeeper.backups.errors import DrillFailedError, NoBackupError
    from marketkeeper.services.backups import StoreSkipped
    from marketkeeper.services.backups import drill_store as drill

    config = store_config()
    _skip_unconfigured(config, store)
    try:
        return drill(config, store).as_dict()
    except NoBackupError as exc:
        raise AirflowSkipException(str(StoreSkipped.no_backup(exc))) from exc
    except DrillFailedError as exc:
        raise AirflowFailException(str(exc)) from exc
