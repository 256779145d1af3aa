"""``marketkeeper backfill --via airflow``: the adapter over :func:`marketkeeper.services.remote.backfill_via_airflow`.

``--wait SECONDS`` follows the run that long and exits with its state (0 only on success); without it the
command prints what it created and where to follow it.
"""

from __future__ import annotations

from datetime import datetime

import typer

from marketkeeper.candles import SeriesKey
from marketkeeper.cli.common import fail, user_errors


def backfill_via_airflow(
    key: SeriesKey,
    start: datetime,
    end: datetime,
    *,
    source: str | None,
    force: bool,
    retry_source_empty: bool,
    max_failed_fraction: float,
    wait: float | None,
    url: str | None,
    user: str | None,
    password: str | None,
) -> None:
    from marketkeeper.airflow_api import AirflowClient, AirflowWaitTimeoutError, WaitProgress
    from marketkeeper.services.remote import RemoteBackfillFailedError, RemoteBackfillRequest
    from marketkeeper.services.remote import backfill_via_airflow as run_remote

    if not url:
        fail("--via airflow needs --airflow-url (or AIRFLOW_API_URL)")
    request = RemoteBackfillRequest(
        key,
        start,
        end,
        force=force,
        retry_source_empty=retry_source_empty,
        max_failed_fraction=max_failed_fraction,
        source=source,
    )
    follow = wait is not None and wait > 0

    def progress(seen: WaitProgress) -> None:
        typer.echo(str(seen), err=True)

    with user_errors():
        client = AirflowClient(url, username=user, password=password)
    try:
        with user_errors():
            try:
                report = run_remote(client, request, wait=follow, progress=progress, timeout=wait if follow else None)
            except RemoteBackfillFailedError as exc:
                fail(str(exc))
            except AirflowWaitTimeoutError as exc:
                fail(f"{exc} (it goes on in Airflow)")
    finally:
        client.close()
    typer.echo(report.summary())
    if follow and not report.ok:
        fail(f"{report.subject} ended {report.state}")
