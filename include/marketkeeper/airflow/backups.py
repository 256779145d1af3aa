"""The Airflow side of the ``backups`` and ``restore_drill`` tasks: the stores a run covers and one service call
per store, with the stores of the Airflow Connections (:func:`marketkeeper.airflow.stores.store_config`); the
same :mod:`marketkeeper.services.backups` functions ``marketkeeper backup run`` and ``backup drill`` call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plan_stores(selected: Sequence[str] = ()) -> list[str]:
    """The stores to cover: ``selected`` (each must be configured), or every configured one.

    :raises ConfigurationError: a selected store is unknown or has no Connection.
    """
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.backups import select_stores

    return select_stores(store_config(), selected)


def backup_store(store: str) -> dict[str, Any]:
    """Back ``store`` up; its ``backup_runs`` row as XCom.

    :raises BackupError: the backup failed (the row says why): the task fails, and is retried.
    :raises AirflowFailException: the server cannot be backed up this way: no retry can change that.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from marketkeeper.airflow.stores import store_config
    from marketkeeper.backups.errors import BackupNotSupportedError
    from marketkeeper.services.backups import run_backup

    try:
        return run_backup(store_config(), store).as_dict()
    except BackupNotSupportedError as exc:
        raise AirflowFailException(str(exc)) from exc


def drill_store(store: str) -> dict[str, Any]:
    """Drill ``store``'s newest complete backup; the outcome as XCom.

    :raises AirflowFailException: the drill failed, naming the store and the first difference. A drill's
        verdict is recorded on the backup's row; retrying the same backup would only repeat it.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from marketkeeper.airflow.stores import store_config
    from marketkeeper.backups.errors import DrillFailedError
    from marketkeeper.services.backups import drill_store as drill

    try:
        return drill(store_config(), store).as_dict()
    except DrillFailedError as exc:
        raise AirflowFailException(str(exc)) from exc
