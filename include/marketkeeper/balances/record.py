"""Recording a snapshot in the ledger, through the repositories of the caller's unit of work.

Writing is idempotent: the rows of the same account and instant are replaced, never merged, so a re-run leaves
the ledger as one run did. Exchange accounts record what their exchange answered (fetched beforehand, outside
the transaction); paper accounts are derived from their bot's executed trades strictly before the instant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from marketkeeper.balances.accounts import Account
from marketkeeper.balances.errors import BalanceError
from marketkeeper.balances.paper import paper_balances
from marketkeeper.balances.snapshot import Balance, SnapshotReport, with_zeroed
from marketkeeper.errors import ConfigurationError
from marketkeeper.repositories.errors import NotFoundError

if TYPE_CHECKING:
    from marketkeeper.repositories import Repositories


def record_exchange_snapshot(
    repos: Repositories, account: Account, at: datetime, fetched: Iterable[Balance]
) -> SnapshotReport:
    """Record what an exchange account's exchange answered as its snapshot at ``at``.

    Every currency with a non-zero figure is recorded, plus a zero row for each currency the previous snapshot
    held. The account's ``currencies`` filter applies last.

    :raises ConfigurationError: the account is not a complete exchange account.
    :raises BalanceError: the account's user does not exist in the ledger.
    """
    user_id, exchange = account.exchange_owner()
    try:
        held = repos.balances.currencies_before(user_id, exchange, at)
    except NotFoundError as exc:
        raise BalanceError(account.name, f"user {user_id} does not exist in the ledger") from exc
    return _replace(repos, account, user_id, exchange, at, with_zeroed(fetched, held))


def record_paper_snapshot(repos: Repositories, account: Account, at: datetime) -> SnapshotReport:
    """Record a paper account's snapshot at ``at``: every currency it has capital or executed trades in, as of
    the trades strictly before ``at``, under its bot's user and ``exchange`` label.

    :raises BalanceError: the bot does not exist, or one of its trades has a symbol without a settlement currency.
    :raises ConfigurationError: the account is not a complete paper account, or names a ``user_id`` that does
        not own the bot.
    """
    bot_id = account.paper_bot()
    try:
        bot = repos.bots.get(bot_id)
    except NotFoundError as exc:
        raise BalanceError(account.name, f"bot {bot_id} does not exist in the ledger") from exc
    if account.user_id is not None and account.user_id != bot.user_id:
        raise ConfigurationError(
            f"paper account {account.name!r}: user_id {account.user_id} is not the owner of bot {bot.id}"
        )
    trades = repos.trades.executed(bot.id, end=at)
    try:
        balances = paper_balances(account.starting_capital, ((t.symbol, t.pnl, t.fee) for t in trades))
    except ValueError as exc:
        raise BalanceError(account.name, str(exc)) from exc
    return _replace(repos, account, bot.user_id, bot.exchange, at, balances)


def _replace(
    repos: Repositories,
    account: Account,
    user_id: uuid.UUID,
    exchange: str,
    at: datetime,
    balances: Iterable[Balance],
) -> SnapshotReport:
    kept = tuple(b for b in balances if account.currencies is None or b.currency in account.currencies)
    repos.balances.replace_at(user_id, exchange, at, (b.row() for b in kept))
    return SnapshotReport(account.name, account.kind, user_id, exchange, at, kept)
