"""Balance snapshots: read an account's balances (an exchange through ccxt, or a paper account from the ledger)
and record them, one ``balance_snapshots`` row per currency stamped at the end of the snapshot's interval.

* :mod:`~marketkeeper.balances.accounts`: an account declaration parsed and checked (:class:`Account`).
* :mod:`~marketkeeper.balances.exchange`: ccxt access, its answer as balances, the no-backfill rule.
* :mod:`~marketkeeper.balances.paper`: a paper account's P&L, per settlement currency.
* :mod:`~marketkeeper.balances.snapshot`: what a snapshot holds, and its InfluxDB points (``balances``).
* :mod:`~marketkeeper.balances.record`: writing a snapshot through the repositories (replace on re-run).

Taking a snapshot end to end (stores, unit of work, InfluxDB) is the use case
:func:`marketkeeper.services.balances.snapshot_account`, which the ``balance_snapshots`` DAG calls.
"""

from __future__ import annotations

from marketkeeper.balances.accounts import Account, AccountKind
from marketkeeper.balances.errors import BalanceError, BalanceFetchError
from marketkeeper.balances.exchange import (
    EXCHANGE_MAX_LAG,
    BalanceExchange,
    check_stamp,
    fetch_exchange_balances,
    make_exchange_client,
    parse_ccxt_balance,
)
from marketkeeper.balances.paper import paper_balances, settlement_currency
from marketkeeper.balances.record import record_exchange_snapshot, record_paper_snapshot
from marketkeeper.balances.snapshot import BALANCES_MEASUREMENT, Balance, SnapshotReport, balance_lines, with_zeroed

__all__ = [
    "BALANCES_MEASUREMENT",
    "EXCHANGE_MAX_LAG",
    "Account",
    "AccountKind",
    "Balance",
    "BalanceError",
    "BalanceExchange",
    "BalanceFetchError",
    "SnapshotReport",
    "balance_lines",
    "check_stamp",
    "fetch_exchange_balances",
    "make_exchange_client",
    "paper_balances",
    "parse_ccxt_balance",
    "record_exchange_snapshot",
    "record_paper_snapshot",
    "settlement_currency",
    "with_zeroed",
]
