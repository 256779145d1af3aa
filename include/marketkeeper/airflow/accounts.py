"""Balance accounts declared as Airflow Connections, and the ``balance_snapshots`` tasks' call of the service.

An account is a Connection of type ``marketkeeper_account`` (see :class:`AccountHook` for its fields). Airflow 3
tasks can read a Connection by id but cannot list them, so the accounts to snapshot are named by the Airflow
Variable ``marketkeeper_balance_accounts`` (a JSON list of connection ids, or comma-separated ids), or by the
DAG's ``accounts`` param on a manual run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from airflow.sdk.bases.hook import BaseHook

from marketkeeper.balances import Account, SnapshotReport
from marketkeeper.errors import ConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: The Airflow Variable listing the account connection ids the hourly run snapshots.
ACCOUNTS_VARIABLE: Final = "marketkeeper_balance_accounts"


class AccountHook(BaseHook):
    """Reads a balance account (:class:`marketkeeper.balances.Account`) from an Airflow Connection.

    Connection fields: ``login`` is the exchange API key and ``password`` its secret (exchange accounts only;
    never logged). Extras: ``kind`` (``exchange`` or ``paper``), ``exchange`` (ccxt id, exchange accounts),
    ``user_id`` (exchange accounts), ``bot_id`` (paper accounts), ``starting_capital`` (paper accounts, e.g.
    ``{"USDT": "10000"}``), optional ``currencies`` (record only these), ``passphrase`` and ``options`` (ccxt).

    :param account_conn_id: the Airflow connection id to read.
    """

    conn_name_attr = "account_conn_id"
    default_conn_name = "marketkeeper_account_default"
    conn_type = "marketkeeper_account"
    hook_name = "Balance account (marketkeeper)"

    def __init__(self, account_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.account_conn_id = account_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(account_conn_id={self.account_conn_id!r})"

    def account(self, conn: Connection | None = None) -> Account:
        """The account the connection declares.

        :param conn: the connection to read; fetched by ``account_conn_id`` when omitted.
        :raises ConfigurationError: the connection is of another type or malformed.
        """
        conn = conn or self.get_connection(self.account_conn_id)
        if conn.conn_type != self.conn_type:
            raise ConfigurationError(
                f"Airflow connection {conn.conn_id!r} has type {conn.conn_type!r}; expected {self.conn_type!r}"
            )
        return Account.from_connection_fields(
            conn.conn_id, login=conn.login, password=conn.password, extra=conn.extra_dejson
        )

    def get_conn(self) -> Account:
        return self.account()


def parse_account_ids(value: str | Sequence[str] | None) -> list[str]:
    """Connection ids from a JSON list, comma/newline-separated text or a list; blanks and repeats dropped.

    :raises ConfigurationError: JSON that is not a list of strings.
    """
    if value is None:
        return []
    items: Sequence[Any]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"Variable {ACCOUNTS_VARIABLE!r} is not a JSON list: {exc}") from exc
        else:
            items = text.replace("\n", ",").split(",")
    else:
        items = value
    if not all(isinstance(item, str) for item in items):
        raise ConfigurationError(f"account ids must be strings, got {items!r}")
    ids: list[str] = []
    for item in items:
        if item.strip() and item.strip() not in ids:
            ids.append(item.strip())
    return ids


def declared_accounts(selected: Sequence[str] = ()) -> list[str]:
    """The account connection ids to snapshot: ``selected`` when given, else the Variable's (may be empty)."""
    from airflow.sdk import Variable

    if parse_account_ids(selected):
        return parse_account_ids(selected)
    return parse_account_ids(Variable.get(ACCOUNTS_VARIABLE, default=None))


def snapshot(conn_id: str, at: datetime) -> SnapshotReport:
    """Snapshot the account of connection ``conn_id`` at ``at`` with this deployment's stores (the ledger, and
    InfluxDB when its connection exists): :func:`marketkeeper.services.balances.snapshot_account`.

    :raises ConfigurationError: the account, ledger or InfluxDB connection is missing or malformed.
    :raises marketkeeper.balances.BalanceError: the balances could not be read.
    """
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.balances import snapshot_account

    return snapshot_account(store_config(), AccountHook(account_conn_id=conn_id).account(), at)
