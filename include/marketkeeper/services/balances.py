"""Use case: take one balance snapshot of an account, into the ledger and (when configured) InfluxDB.

The ``balance_snapshots`` tasks call :func:`snapshot_account` with the stores of the Airflow Connections; tests
and any other caller pass their own :class:`~marketkeeper.store_set.StoreConfig`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from marketkeeper.balances import (
    EXCHANGE_MAX_LAG,
    Account,
    AccountKind,
    BalanceExchange,
    SnapshotReport,
    balance_lines,
    check_stamp,
    fetch_exchange_balances,
    record_exchange_snapshot,
    record_paper_snapshot,
)
from marketkeeper.repositories import unit_of_work
from marketkeeper.store_set import StoreConfig, StoreSet

__all__ = ["snapshot_account"]

log = logging.getLogger(__name__)


def snapshot_account(
    config: StoreConfig,
    account: Account,
    at: datetime,
    *,
    exchange_client: BalanceExchange | None = None,
    max_lag: timedelta = EXCHANGE_MAX_LAG,
) -> SnapshotReport:
    """Take one snapshot of ``account`` stamped ``at`` into the ledger, and into InfluxDB when configured.

    Exchange accounts record every currency with a non-zero balance, plus a zero row for each currency the
    previous snapshot held; paper accounts every currency they have capital or trades in, as of the trades
    strictly before ``at``. Re-running an instant replaces its rows, and its InfluxDB points overwrite
    themselves (measurement ``balances``).

    :param config: where the stores are.
    :param account: the account.
    :param at: the snapshot's instant, the end of its interval (aware).
    :param exchange_client: exchange accounts: a ccxt exchange to use instead of one built from the keys.
    :param max_lag: exchange accounts: how far ``at`` may lie in the past. An exchange reports only present
        balances, so stamping them on an older instant (a backfill) would record a balance that never was.
    :raises ValueError: ``at`` is naive.
    :raises BalanceError: the balances could not be read (:class:`BalanceFetchError` from the exchange), or an
        exchange account was asked for an instant older than ``max_lag``.
    :raises ConfigurationError: the account is malformed.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"snapshot time {at.isoformat()} is naive; pass an aware UTC datetime")
    at = at.astimezone(UTC)
    account.validate()
    fetched = None
    if account.kind is AccountKind.EXCHANGE:
        check_stamp(account, at, max_lag=max_lag)
        # Before the transaction: an exchange round trip must not hold a ledger connection open.
        fetched = fetch_exchange_balances(account, exchange_client)
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        if fetched is not None:
            report = record_exchange_snapshot(repos, account, at, fetched)
        else:
            report = record_paper_snapshot(repos, account, at)
    points = 0
    if config.influxdb is not None and report.balances:
        with config.influxdb() as influxdb:
            points = influxdb.write_lines(balance_lines(report))
    log.info(
        "account %s (%s %s): %d currencies at %s, %d InfluxDB points",
        account.name, account.kind.value, report.exchange, len(report.balances), at.isoformat(), points,
    )  # fmt: skip
    return SnapshotReport(
        report.account, report.kind, report.user_id, report.exchange, report.timestamp, report.balances, points
    )
