"""Balance snapshots: the latest (or as-of) snapshot of an account's currency, a snapshot history, the
idempotent replace of one instant's snapshot, and the total-balance series an equity curve is built from.

An *account* here is ``(user_id, exchange)``: a snapshot is one row per currency of an account at an instant.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from marketkeeper.ledger.models import BalanceSnapshot, User
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.errors import ValidationError
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
        statement = self._of_user(user_id, BalanceSnapshot.exchange == exchange, BalanceSnapshot.currency == currency)
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
        statement = self._of_user(user_id)
        if exchange is not None:
            statement = statement.where(BalanceSnapshot.exchange == exchange)
        if currency is not None:
            statement = statement.where(BalanceSnapshot.currency == currency)
        return self._all(self._within(statement, BalanceSnapshot.timestamp, start, end), order="timestamp")

    def replace_at(
        self, user_id: RecordId, exchange: str, at: datetime, rows: Iterable[Mapping[str, Any]]
    ) -> builtins.list[BalanceSnapshot]:
        """Replace the account's snapshot at ``at`` with ``rows`` and return the rows written.

        Replacing (not merging) is what makes a re-run exact: a currency missing from ``rows`` is gone from
        the snapshot too. Every row is validated before anything is deleted.

        :param rows: ``currency``, ``total_balance``, ``available_balance`` and optionally ``locked_balance``
            of each currency; ``user_id``, ``exchange`` and ``timestamp`` are filled in.
        :raises NotFoundError: the user does not exist.
        :raises ValidationError: ``at`` is naive, or a row holds an unknown field or a value that does not fit.
        :raises ConflictError: ``rows`` repeat a currency.
        """
        key = self._require(User, user_id, "user_id")
        instant = aware_utc(at, model=self.name, field="timestamp")
        records = [self._build({**row, "user_id": key, "exchange": exchange, "timestamp": instant}) for row in rows]
        self.session.execute(
            sa.delete(BalanceSnapshot).where(
                BalanceSnapshot.user_id == key,
                BalanceSnapshot.exchange == exchange,
                BalanceSnapshot.timestamp == instant,
            )
        )
        self.session.add_all(records)
        self._flush("create")
        return records

    def delete_between(self, user_id: RecordId, exchange: str, *, start: datetime, end: datetime) -> int:
        """Delete the account's snapshots stamped from ``start`` to ``end``, both included; how many went.

        :raises NotFoundError: the user does not exist.
        :raises ValidationError: a bound is naive, or ``start`` is after ``end``.
        """
        key = self._require(User, user_id, "user_id")
        lower = aware_utc(start, model=self.name, field="start")
        upper = aware_utc(end, model=self.name, field="end")
        if lower > upper:
            raise ValidationError(f"start {lower.isoformat()} is after end {upper.isoformat()}", field="start")
        result = self.session.execute(
            sa.delete(BalanceSnapshot).where(
                BalanceSnapshot.user_id == key,
                BalanceSnapshot.exchange == exchange,
                BalanceSnapshot.timestamp >= lower,
                BalanceSnapshot.timestamp <= upper,
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def currencies_before(self, user_id: RecordId, exchange: str, at: datetime) -> set[str]:
        """The currencies of the account's latest snapshot strictly before ``at`` (empty before the first).

        :raises NotFoundError: the user does not exist.
        :raises ValidationError: ``at`` is naive.
        """
        key = self._require(User, user_id, "user_id")
        instant = aware_utc(at, model=self.name, field="at")
        account = (BalanceSnapshot.user_id == key, BalanceSnapshot.exchange == exchange)
        previous = (
            sa.select(sa.func.max(BalanceSnapshot.timestamp))
            .where(*account, BalanceSnapshot.timestamp < instant)
            .scalar_subquery()
        )
        statement = sa.select(BalanceSnapshot.currency).where(*account, BalanceSnapshot.timestamp == previous)
        return set(self.session.scalars(statement))

    def total_series(
        self, user_id: RecordId, exchange: str, currency: str, *, since: datetime | None, until: datetime
    ) -> builtins.list[tuple[datetime, Decimal]]:
        """``(timestamp, total_balance)`` of the account's ``currency`` in ``(since, until]``, oldest first,
        plus the last snapshot at or before ``since`` (the value carried into the window); everything up to
        ``until`` when ``since`` is ``None``.

        :raises NotFoundError: the user does not exist.
        :raises ValidationError: a bound is naive.
        """
        key = self._require(User, user_id, "user_id")
        upper = aware_utc(until, model=self.name, field="until")
        account = (
            BalanceSnapshot.user_id == key,
            BalanceSnapshot.exchange == exchange,
            BalanceSnapshot.currency == currency,
        )
        statement = sa.select(BalanceSnapshot.timestamp, BalanceSnapshot.total_balance).where(
            *account, BalanceSnapshot.timestamp <= upper
        )
        ordered = (BalanceSnapshot.timestamp, BalanceSnapshot.id)
        if since is None:
            return [(timestamp, total) for timestamp, total in self.session.execute(statement.order_by(*ordered))]
        lower = aware_utc(since, model=self.name, field="since")
        carried = self.session.execute(
            statement.where(BalanceSnapshot.timestamp <= lower)
            .order_by(BalanceSnapshot.timestamp.desc(), BalanceSnapshot.id.desc())
            .limit(1)
        ).first()
        window = self.session.execute(statement.where(BalanceSnapshot.timestamp > lower).order_by(*ordered))
        rows = [(carried[0], carried[1])] if carried is not None else []
        rows.extend((timestamp, total) for timestamp, total in window)
        return rows
