"""Balance snapshots: the latest (or as-of) snapshot of an account's currency, and a snapshot history."""

from __future__ import annotations

import builtins
from datetime import datetime

import sqlalchemy as sa

from marketkeeper.ledger.models import BalanceSnapshot, User
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.validation import RecordId, aware_utc


class BalanceSnapshotRepository(Repository[BalanceSnapshot]):
    """Balance snapshots, newest first. Balances may be negative (a margin account in debt), so no sign check."""

    model = BalanceSnapshot
    default_order = ("-timestamp",)

    def find_latest(
        self, user_id: RecordId, exchange: str, currency: str, *, as_of: datetime | None = None
    ) -> BalanceSnapshot | None:
        """The newest snapshot of the user's ``currency`` on ``exchange`` (taken at or before ``as_of``), or
        ``None`` when none was ever taken: an account's first snapshot run finds nothing, normally.

        :raises NotFoundError: the user does not exist.
        :raises ValidationError: ``as_of`` is naive.
        """
        key = self._require(User, user_id, "user_id")
        statement = sa.select(BalanceSnapshot).where(
            BalanceSnapshot.user_id == key,
            BalanceSnapshot.exchange == exchange,
            BalanceSnapshot.currency == currency,
        )
        if as_of is not None:
            statement = statement.where(BalanceSnapshot.timestamp <= aware_utc(as_of, field="as_of"))
        statement = statement.order_by(BalanceSnapshot.timestamp.desc(), BalanceSnapshot.id.desc()).limit(1)
        return self.session.scalars(statement).first()

    def history(
        self,
        user_id: RecordId,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        exchange: str | None = None,
        currency: str | None = None,
    ) -> builtins.list[BalanceSnapshot]:
        """The user's snapshots in ``[start, end)``, oldest first (an equity curve's input).

        :raises NotFoundError: the user does not exist.
        """
        key = self._require(User, user_id, "user_id")
        statement = sa.select(BalanceSnapshot).where(BalanceSnapshot.user_id == key)
        if exchange is not None:
            statement = statement.where(BalanceSnapshot.exchange == exchange)
        if currency is not None:
            statement = statement.where(BalanceSnapshot.currency == currency)
        return self._all(self._within(statement, BalanceSnapshot.timestamp, start, end), order="timestamp")
