"""The FastAPI app behind the marketkeeper ops plugin (``plugins/marketkeeper_ops.py``): the page, the status
document, the health routes and the Prometheus metrics, every route behind Airflow's own access check.

It lives here, not in the plugin module, because every Airflow task process loads every plugin: importing
FastAPI and Airflow's API security costs a task 1.5-2.5 s, so the plugin builds this app only when the
api-server asks for its ``fastapi_apps``.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

#: The seeds' store names in the health routes, and the store each checks.
HEALTH_STORES = {"postgres": "ledger", "redis": "redis", "influxdb": "influxdb"}

app = FastAPI(
    title="marketkeeper ops",
    description="Freshness, gaps, quality, stores and backups of marketkeeper, and its SLO breaches.",
    dependencies=[Depends(requires_access_view(AccessView.WEBSITE))],
)


def _status() -> Any:
    from marketkeeper.airflow.ingestion import declared_override
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.errors import MarketkeeperError, first_line
    from marketkeeper.services.status import ops_status

    try:
        return ops_status(store_config(), markets_override=declared_override())
    except MarketkeeperError as exc:  # a bad declaration, connection or SLO setting: say which, in one line
        raise HTTPException(status_code=500, detail=f"cannot measure: {first_line(exc)}") from exc


@app.get("/", response_class=HTMLResponse)
def page(
    exchange: Annotated[str, Query()] = "",
    timeframe: Annotated[str, Query()] = "",
    status: Annotated[str, Query()] = "",
) -> HTMLResponse:
    from marketkeeper.ops.page import render_page

    chosen = {"exchange": exchange, "timeframe": timeframe, "status": status}
    return HTMLResponse(render_page(_status(), chosen))


@app.get("/status")
def status_document() -> JSONResponse:
    return JSONResponse(_status().as_dict())


@app.get("/health/{store}")
def health(store: str) -> JSONResponse:
    from marketkeeper.airflow.stores import Store, check_store
    from marketkeeper.errors import MarketkeeperError, first_line

    if store not in HEALTH_STORES:
        raise HTTPException(status_code=404, detail=f"unknown store {store!r}; one of {', '.join(HEALTH_STORES)}")
    try:
        answer = check_store(Store(HEALTH_STORES[store]))
    except MarketkeeperError as exc:
        return JSONResponse({"store": store, "ok": False, "error": first_line(exc)}, status_code=503)
    if not answer.configured:
        return JSONResponse({"store": store, "ok": False, "error": f"not configured: {answer.error}"}, status_code=503)
    return JSONResponse({**answer.as_dict(), "store": store})


@app.get("/metrics")
def metrics() -> Response:
    from marketkeeper.ops.metrics import CONTENT_TYPE, render_metrics

    return Response(render_metrics(_status()), media_type=CONTENT_TYPE)
