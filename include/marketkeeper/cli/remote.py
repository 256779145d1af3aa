"""``marketkeeper backfill --via airflow``: the adapter over :mod:`marketkeeper.services.remote`."""

from __future__ import annotations

from datetime import datetime

from marketkeeper.candles import SeriesKey
from marketkeeper.cli.common import fail


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
    fail("--via airflow is being rebuilt")
