"""
### balance_snapshots

Records every declared account's balances once an hour: one `balance_snapshots` row per account and currency,
stamped at the end of the run's data interval, and the same figures to InfluxDB (`balances` measurement) when
`marketkeeper_influxdb_default` exists.

* **Accounts** are Airflow Connections of type `marketkeeper_account`, listed by id in the Variable
  `marketkeeper_balance_accounts` (JSON list or comma-separated); one mapped task per account.
  - *exchange*: ccxt `fetch_balance` with the API key/secret in login/password; extras `exchange` (ccxt id) and
    `user_id`. Exchanges only report the present, so such a snapshot is refused for an interval that ended
    more than an hour ago (a backfill would stamp today's balances on the past).
  - *paper*: derived from the ledger (starting capital plus realized P&L minus fees, per settlement
    currency, trades before the interval end); extras `bot_id` and `starting_capital`, e.g. `{"USDT": "10000"}`.
    Paper snapshots can be backfilled.
* **Idempotent**: re-running an interval replaces that instant's rows; InfluxDB points overwrite themselves.
* **Manual runs** (Trigger DAG w/ config): list account connection ids in `accounts` to snapshot only those.

No accounts declared: the mapped task is skipped and the run succeeds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, task

from marketkeeper.airflow.dag_glue import marketkeeper_dag, selection_param


@task
def plan(**context: Any) -> list[str]:
    """The account connection ids to snapshot (a bad selection fails the run at once, without retries)."""
    from marketkeeper.airflow.accounts import declared_accounts
    from marketkeeper.airflow.dag_glue import fail_fast

    with fail_fast():
        return declared_accounts(context["params"]["accounts"])


@task(map_index_template="{{ map_label }}")
def snapshot(conn_id: str, **context: Any) -> dict[str, object]:
    """Snapshot one account at the end of the run's data interval."""
    from airflow.sdk.exceptions import AirflowFailException

    from marketkeeper.airflow.accounts import snapshot as snapshot_account
    from marketkeeper.airflow.dag_glue import set_map_label

    set_map_label(conn_id)
    at = context["data_interval_end"]
    if at is None:
        raise AirflowFailException("this run has no data interval to stamp the snapshot with")
    return snapshot_account(conn_id, at).as_dict()


@task
def summary(reports: list[dict[str, object]]) -> int:
    """Log one line per account; return how many accounts were snapshotted."""
    import logging

    log = logging.getLogger("airflow.task")
    count = 0
    for report in reports:
        log.info(
            "%s (%s %s) at %s: %s", report["account"], report["kind"], report["exchange"], report["timestamp"],
            report["balances"],
        )  # fmt: skip
        count += 1
    return count


@marketkeeper_dag(
    "balance_snapshots",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    doc=__doc__,
    tags=["ledger", "balances"],
    timeout=timedelta(minutes=30),
    retry_delay=timedelta(minutes=1),
    params={
        "accounts": selection_param(
            "Accounts", "Account connection ids, one per line; empty = the Variable marketkeeper_balance_accounts."
        ),
    },
)
def balance_snapshots() -> None:
    summary(snapshot.expand(conn_id=plan()))


balance_snapshots()
