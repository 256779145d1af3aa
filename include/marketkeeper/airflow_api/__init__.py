"""A small client of a running Airflow's public REST API (v2): token auth, DAG runs, task instances, backfills.

Used by ``marketkeeper backfill --via airflow`` (:mod:`marketkeeper.services.remote`); it needs only ``requests``,
not Airflow itself. Every failure is an :class:`AirflowAPIError` subclass with a one-line message that names the
server (without credentials) and Airflow's reason; the password is never part of any message.
"""

from marketkeeper.airflow_api.client import AirflowClient
from marketkeeper.airflow_api.errors import AirflowAPIError, AirflowWaitTimeoutError
from marketkeeper.airflow_api.models import DagRun, ProgressCallback, WaitProgress

# The other errors and models are imported from their modules (errors, models).
__all__ = ["AirflowAPIError", "AirflowClient", "AirflowWaitTimeoutError", "DagRun", "ProgressCallback", "WaitProgress"]
