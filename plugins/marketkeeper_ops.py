"""The marketkeeper ops plugin for the Airflow 3 UI: a page in the nav (``external_views``) served by a FastAPI
app mounted at ``/marketkeeper`` (``fastapi_apps``), with its JSON, health and Prometheus endpoints.

    /marketkeeper/                    the page: series coloured by status, filters, stores, backups
    /marketkeeper/status              the status document (the JSON of ``marketkeeper status --json``)
    /marketkeeper/health/{store}      postgres | redis | influxdb: 200, or 503 with the cause
    /marketkeeper/metrics             Prometheus text exposition

Airflow does not authenticate plugin apps (apache/airflow#72655, #72935): every route here depends on
Airflow's own ``requires_access_view`` (the caller's JWT from ``Authorization: Bearer`` or the UI's ``_token``
cookie, checked by the configured auth manager), so an anonymous request gets 401 and an unauthorised one 403.
Prometheus scrapes with a bearer token (``POST /auth/token``). Figures come from
:func:`marketkeeper.services.status.ops_status` on the stores of the Airflow Connections the DAGs use.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/marketkeeper"


class _OpsApps:
    """``fastapi_apps``, built on first read. Only the api-server reads it; task processes, which load every
    plugin as well, never import FastAPI and Airflow's API security for it (1.5-2.5 s a task)."""

    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        from marketkeeper.airflow.ops_app import app

        return [{"app": app, "url_prefix": URL_PREFIX, "name": "marketkeeper ops"}]


class MarketkeeperOpsPlugin(AirflowPlugin):
    """The ops page in the Airflow UI's nav and its backend."""

    # Airflow's plugin interface is these class attributes.
    name = "marketkeeper_ops"
    fastapi_apps = _OpsApps()
    external_views = [  # noqa: RUF012
        {
            "name": "Marketkeeper ops",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "marketkeeper-ops",
        }
    ]
