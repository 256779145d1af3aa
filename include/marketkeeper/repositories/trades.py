"""Trades: queries by bot, symbol and time, a bot's executed trades, per-bot aggregations and statistics, and a
streaming CSV export.

Time windows are half-open, ``[start, end)`` on the trade's ``timestamp``, aware UTC; either side may be open.
P&L conventions (pnl before fees, fees of every fill, net = pnl - fees) are those of
:mod:`marketkeeper.repositories.statistics`.
"""

from __future__ import annotations

import builtins
import csv
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple, TextIO

import sqlalchemy as sa

from marketkeeper.ledger.models import BotInstance, Trade, TradeStatus
from marketkeeper.repositories.base import Page, Repository
from marketkeeper.repositories.statistics import TradeStatistics, trade_statistics
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE, RecordId, coerce_column

#: The CSV export's columns, in order; every one is a ``Trade`` attribute.
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "bot_id",
    "timestamp",
    "symbol",
    "exchange",
    "exchange_trade_id",
    "side",
    "order_type",
    "status",
    "quantity",
    "price",
    "executed_price",
    "fee",
    "leverage",
    "pnl",
)
_ZERO = Decimal(0)
#: The statuses of a trade that moved money: what P&L, fees and balances are computed from.
EXECUTED_STATUSES: tuple[TradeStatus, ...] = (TradeStatus.FILLED, TradeStatus.PARTIALLY_FILLED)


class ExecutedTrade(NamedTuple):
    """The money of one executed trade: when, in which symbol, its realized P&L (``None`` on opening fills)
    and its fee."""

    timestamp: datetime
    symbol: str
    pnl: Decimal | None
    fee: Decimal


def csv_text(value: Any) -> str:
    """One CSV cell: Decimals as exact fixed-point text without trailing zeros, timestamps as ISO 8601 UTC,
    enums by value, NULL as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        # normalize() drops the 18-place padding; "f" keeps 1E+2 as 100. Zero is written "0", never "-0".
        return "0" if value.is_zero() else format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


class TradeRepository(Repository[Trade]):
    """Trades of every bot; newest first unless told otherwise."""

    model = Trade
    default_order = ("-timestamp",)
    positive_fields = frozenset({"quantity", "leverage"})
    non_negative_fields = frozenset({"fee", "price", "executed_price"})

    def by_bot(
        self,
        bot_id: RecordId,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        offset: int = 0,
        order: str | Sequence[str] | None = None,
    ) -> Page[Trade]:
        """One page of the bot's trades in ``[start, end)``, newest first unless ``order`` says otherwise.

        :param order: as for :meth:`~marketkeeper.repositories.base.Repository.list`, e.g. ``"-pnl"``.
        :raises NotFoundError: the bot does not exist.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        statement = self._within(sa.select(Trade).where(Trade.bot_id == key), Trade.timestamp, start, end)
        return self._page(statement, limit=limit, offset=offset, order=order)

    def by_symbol(
        self,
        symbol: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        offset: int = 0,
    ) -> Page[Trade]:
        """One page of every bot's trades of ``symbol`` (exact, e.g. ``BTC/USDT``) in ``[start, end)``."""
        symbol = coerce_column(self._columns["symbol"], symbol, model=self.name, field="symbol")
        statement = self._within(sa.select(Trade).where(Trade.symbol == symbol), Trade.timestamp, start, end)
        return self._page(statement, limit=limit, offset=offset)

    def by_date_range(
        self, start: datetime, end: datetime, *, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0
    ) -> Page[Trade]:
        """One page of every bot's trades in ``[start, end)`` (both required)."""
        return self._page(self._within(sa.select(Trade), Trade.timestamp, start, end), limit=limit, offset=offset)

    def executed(
        self, bot_id: RecordId, *, start: datetime | None = None, end: datetime | None = None
    ) -> builtins.list[ExecutedTrade]:
        """The bot's executed (filled or partially filled) trades in ``[start, end)``, oldest first.

        :raises NotFoundError: the bot does not exist.
        :raises ValidationError: a bound is naive, or ``start`` is not before ``end``.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        statement = sa.select(Trade.timestamp, Trade.symbol, Trade.pnl, Trade.fee).where(
            Trade.bot_id == key, Trade.status.in_(EXECUTED_STATUSES)
        )
        statement = self._within(statement, Trade.timestamp, start, end).order_by(Trade.timestamp, Trade.id)
        return [ExecutedTrade(*row) for row in self.session.execute(statement)]

    def latest_executed_symbol(self, bot_id: RecordId, *, before: datetime) -> str | None:
        """The symbol of the bot's last executed trade before ``before``, or ``None`` when it has none.

        :raises NotFoundError: the bot does not exist.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        statement = self._within(
            sa.select(Trade.symbol).where(Trade.bot_id == key, Trade.status.in_(EXECUTED_STATUSES)),
            Trade.timestamp,
            None,
            before,
        )
        return self.session.scalar(statement.order_by(Trade.timestamp.desc(), Trade.id.desc()).limit(1))

    def ids_by_bot(self, bot_id: RecordId) -> set[uuid.UUID]:
        """The ids of every trade of the bot.

        :raises NotFoundError: the bot does not exist.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        return set(self.session.scalars(sa.select(Trade.id).where(Trade.bot_id == key)))

    # --- aggregations ------------------------------------------------------------------------------------------

    def statistics(
        self, bot_id: RecordId, *, start: datetime | None = None, end: datetime | None = None
    ) -> TradeStatistics:
        """The bot's :class:`TradeStatistics` over ``[start, end)``.

        PostgreSQL sums exactly in SQL; on SQLite the decimals are text, so ``(pnl, fee)`` pairs are streamed
        and summed in Python instead. Both give the same figures.

        :raises NotFoundError: the bot does not exist.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        if self._dialect == "postgresql":
            return self._statistics_in_sql(key, start, end)
        statement = self._within(
            sa.select(Trade.pnl, Trade.fee).where(Trade.bot_id == key), Trade.timestamp, start, end
        )
        rows = self.session.execute(statement.execution_options(yield_per=1000))
        return trade_statistics((pnl, fee) for pnl, fee in rows)

    def total_pnl(self, bot_id: RecordId, *, start: datetime | None = None, end: datetime | None = None) -> Decimal:
        """The bot's net P&L over ``[start, end)``: realized pnl minus every fee (``statistics().net_pnl``)."""
        return self.statistics(bot_id, start=start, end=end).net_pnl

    def trade_count(self, bot_id: RecordId, *, start: datetime | None = None, end: datetime | None = None) -> int:
        """Every trade of the bot in ``[start, end)``, closed or not."""
        stats = self.statistics(bot_id, start=start, end=end)
        return stats.count + stats.open_count

    def win_rate(
        self, bot_id: RecordId, *, start: datetime | None = None, end: datetime | None = None
    ) -> Decimal | None:
        """Wins over closed trades in ``[start, end)``, from 0 to 1; ``None`` when no trade closed."""
        return self.statistics(bot_id, start=start, end=end).win_rate

    def _statistics_in_sql(self, bot_id: Any, start: datetime | None, end: datetime | None) -> TradeStatistics:
        pnl = Trade.pnl
        won, lost = pnl > _ZERO, pnl < _ZERO
        statement = self._within(
            sa.select(
                sa.func.count(pnl),
                sa.func.count().filter(won),
                sa.func.count().filter(lost),
                sa.func.count().filter(pnl.is_(None)),
                sa.func.coalesce(sa.func.sum(pnl).filter(won), _ZERO),
                sa.func.coalesce(sa.func.sum(pnl).filter(lost), _ZERO),
                sa.func.coalesce(sa.func.sum(Trade.fee), _ZERO),
                sa.func.max(pnl).filter(won),
                sa.func.min(pnl).filter(lost),
            ).where(Trade.bot_id == bot_id),
            Trade.timestamp,
            start,
            end,
        )
        count, wins, losses, open_count, profit, loss, fees, largest_win, largest_loss = self.session.execute(
            statement
        ).one()
        return TradeStatistics.from_totals(
            count=count,
            wins=wins,
            losses=losses,
            open_count=open_count,
            gross_profit=profit or _ZERO,
            gross_loss=loss or _ZERO,
            fees=fees,
            largest_win=largest_win,
            largest_loss=largest_loss,
        )

    # --- export ---------------------------------------------------------------------------------------------

    def export_csv(
        self,
        bot_id: RecordId,
        file: TextIO,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Write the bot's trades in ``[start, end)`` to ``file`` as CSV, oldest first, and return the row count.

        The header is :data:`CSV_COLUMNS`; cells are written by :func:`csv_text` (exact decimals, ISO UTC
        times). Rows are streamed ``batch_size`` at a time (a server-side cursor on PostgreSQL), so an export
        of any length runs in constant memory.

        :param file: a text file opened with ``newline=""``, as the :mod:`csv` module requires.
        :raises NotFoundError: the bot does not exist.
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        columns = [getattr(Trade, name) for name in CSV_COLUMNS]
        statement = self._within(sa.select(*columns).where(Trade.bot_id == key), Trade.timestamp, start, end)
        statement = statement.order_by(Trade.timestamp, Trade.id).execution_options(yield_per=batch_size)
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        written = 0
        for row in self.session.execute(statement):
            writer.writerow([csv_text(value) for value in row])
            written += 1
        return written

    def iter_by_bot(
        self,
        bot_id: RecordId,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        batch_size: int = 1000,
    ) -> Iterator[Trade]:
        """Every trade of the bot in ``[start, end)``, oldest first, streamed ``batch_size`` at a time.

        :raises NotFoundError: the bot does not exist (raised on the first ``next``).
        """
        key = self._require(BotInstance, bot_id, "bot_id")
        statement = self._within(sa.select(Trade).where(Trade.bot_id == key), Trade.timestamp, start, end)
        statement = statement.order_by(Trade.timestamp, Trade.id).execution_options(yield_per=batch_size)
        yield from self.session.scalars(statement)
