"""The failures of a balance snapshot: the account could not be read, or its exchange refused."""

from __future__ import annotations

from marketkeeper.errors import MarketkeeperError


class BalanceError(MarketkeeperError):
    """A snapshot of an account could not be taken.

    :ivar account: the account's name (its Airflow connection id).
    """

    def __init__(self, account: str, message: str) -> None:
        super().__init__(f"balance snapshot of account {account!r}: {message}")
        self.account = account


class BalanceFetchError(BalanceError):
    """The exchange refused or failed ``fetch_balance``; the cause names the ccxt error (secrets redacted)."""

    def __init__(self, account: str, exchange: str, cause: str) -> None:
        super().__init__(account, f"{exchange} fetch_balance failed: {cause}")
        self.exchange = exchange
        self.cause = cause
