"""The ``ohlcv_retention`` and ``ledger_maintenance`` tasks: the declared markets (or the ledger settings) from
Airflow's view of the configuration, through the same services the CLI calls."""

from __future__ import annotations

from typing import Any

__all__ = ["apply_retention_task", "maintain_ledger_task"]


def apply_retention_task(dry_run: bool = False) -> dict[str, Any]:
    """:func:`~marketkeeper.services.retention.apply_retention` over every declared market with retention."""
    import logging

    from marketkeeper.airflow.dag_glue import fail_fast
    from marketkeeper.airflow.ingestion import declared_override
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.markets import declared_markets
    from marketkeeper.services.retention import apply_retention

    log = logging.getLogger("airflow.task")
    with fail_fast():
        markets = [m for m in declared_markets(declared_override()) if m.retention_days]
        config = store_config()
    report = apply_retention(config, markets, dry_run=dry_run)
    for item in report.items:
        log.info("%s: %s", item.key, item.as_dict())
        for reason in item.held_back:
            log.warning("%s held back %s", item.key, reason)
    return {"deleted": report.deleted, "series": [i.as_dict() for i in report.items]}


def maintain_ledger_task(dry_run: bool = False) -> dict[str, Any]:
    """:func:`~marketkeeper.services.maintenance.maintain_ledger` with the configured ages."""
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.maintenance import maintain_ledger

    return maintain_ledger(store_config(), dry_run=dry_run).as_dict()
