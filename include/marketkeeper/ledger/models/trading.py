"""The trading system's own tables: users, bots, their trades, positions, balances, performance and configs.

Fields follow the trading system's database module; money records (trades, positions, balance snapshots)
are protected by ``ON DELETE RESTRICT`` so deleting a user or bot never erases financial history silently.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketkeeper.ledger.base import Base, Timestamps, UUIDPrimaryKey
from marketkeeper.ledger.models.enums import (
    BotStatus,
    OrderType,
    PositionSide,
    PositionStatus,
    TradeSide,
    TradeStatus,
)
from marketkeeper.ledger.types import enum_type, utcnow

if TYPE_CHECKING:
    from marketkeeper.ledger.models.operations import Alert, AuditLog

_ZERO = Decimal(0)


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint("length(username) >= 3", name="username_min_length"),
        sa.CheckConstraint("length(email) >= 5", name="email_min_length"),
    )

    username: Mapped[str] = mapped_column(sa.String(50), unique=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_verified: Mapped[bool] = mapped_column(default=False)

    bot_instances: Mapped[list[BotInstance]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    balance_snapshots: Mapped[list[BalanceSnapshot]] = relationship(back_populates="user", passive_deletes="all")
    alerts: Mapped[list[Alert]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    audit_logs: Mapped[list[AuditLog]] = relationship(back_populates="user", passive_deletes=True)


class BotInstance(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "bot_instances"
    __table_args__ = (sa.UniqueConstraint("user_id", "name"),)

    name: Mapped[str] = mapped_column(sa.String(100))
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    #: Free text on purpose: strategies are plug-ins of the trading system (static, dynamic, ...).
    strategy_type: Mapped[str] = mapped_column(sa.String(50))
    exchange: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[BotStatus] = mapped_column(enum_type(BotStatus, "bot_status"), default=BotStatus.STOPPED)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_active: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="bot_instances")
    trades: Mapped[list[Trade]] = relationship(back_populates="bot_instance", passive_deletes="all")
    positions: Mapped[list[Position]] = relationship(back_populates="bot_instance", passive_deletes="all")
    performance_metrics: Mapped[list[PerformanceMetrics]] = relationship(
        back_populates="bot_instance", cascade="all, delete-orphan", passive_deletes=True
    )


class Trade(UUIDPrimaryKey, Base):
    """One execution; ``exchange``, ``exchange_trade_id`` and ``leverage`` come from the storage layer."""

    __tablename__ = "trades"
    __table_args__ = (
        sa.Index("ix_trades_bot_id_timestamp", "bot_id", "timestamp"),
        sa.Index("ix_trades_symbol_timestamp", "symbol", "timestamp"),
        sa.Index("ix_trades_timestamp", "timestamp"),
        # The CAST is a no-op on PostgreSQL; on SQLite the column is text and would compare as text.
        sa.CheckConstraint("CAST(quantity AS NUMERIC) > 0", name="quantity_positive"),
        sa.CheckConstraint("CAST(fee AS NUMERIC) >= 0", name="fee_non_negative"),
    )

    bot_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("bot_instances.id", ondelete="RESTRICT"))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    exchange: Mapped[str | None] = mapped_column(sa.String(32))
    #: The exchange's own id of the fill, to reconcile against the exchange.
    exchange_trade_id: Mapped[str | None] = mapped_column(sa.String(64))
    side: Mapped[TradeSide] = mapped_column(enum_type(TradeSide, "trade_side"))
    order_type: Mapped[OrderType] = mapped_column(enum_type(OrderType, "order_type"))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    executed_price: Mapped[Decimal]
    fee: Mapped[Decimal] = mapped_column(default=_ZERO)
    leverage: Mapped[Decimal] = mapped_column(default=Decimal(1))
    pnl: Mapped[Decimal | None]
    status: Mapped[TradeStatus] = mapped_column(enum_type(TradeStatus, "trade_status"))
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    bot_instance: Mapped[BotInstance] = relationship(back_populates="trades")


class Position(UUIDPrimaryKey, Timestamps, Base):
    """A bot's position; ``exchange``, ``leverage``, ``margin`` and ``status`` come from the storage layer."""

    __tablename__ = "positions"
    __table_args__ = (
        sa.Index("ix_positions_bot_id_status", "bot_id", "status"),
        sa.Index("ix_positions_symbol_status", "symbol", "status"),
    )

    bot_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("bot_instances.id", ondelete="RESTRICT"))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    exchange: Mapped[str | None] = mapped_column(sa.String(32))
    side: Mapped[PositionSide] = mapped_column(enum_type(PositionSide, "position_side"))
    status: Mapped[PositionStatus] = mapped_column(
        enum_type(PositionStatus, "position_status"), default=PositionStatus.OPEN
    )
    quantity: Mapped[Decimal]
    entry_price: Mapped[Decimal]
    current_price: Mapped[Decimal]
    leverage: Mapped[Decimal] = mapped_column(default=Decimal(1))
    margin: Mapped[Decimal | None]
    unrealized_pnl: Mapped[Decimal] = mapped_column(default=_ZERO)
    realized_pnl: Mapped[Decimal] = mapped_column(default=_ZERO)
    closed_at: Mapped[datetime | None]

    bot_instance: Mapped[BotInstance] = relationship(back_populates="positions")


class BalanceSnapshot(UUIDPrimaryKey, Base):
    """One account's balance of one currency at one instant; a re-run snapshot replaces, never duplicates."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (
        # One row per account, currency and instant; its index also serves "latest snapshot of
        # (user, exchange, currency)": an index scan backwards, one row.
        sa.UniqueConstraint("user_id", "exchange", "currency", "timestamp"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    exchange: Mapped[str] = mapped_column(sa.String(32))
    currency: Mapped[str] = mapped_column(sa.String(16))
    total_balance: Mapped[Decimal]
    available_balance: Mapped[Decimal]
    locked_balance: Mapped[Decimal] = mapped_column(default=_ZERO)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="balance_snapshots")


class StrategyConfig(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "strategy_configs"

    name: Mapped[str] = mapped_column(sa.String(100))
    strategy_type: Mapped[str] = mapped_column(sa.String(50))
    config_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)


class MLModel(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "ml_models"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    name: Mapped[str] = mapped_column(sa.String(100))
    model_type: Mapped[str] = mapped_column(sa.String(50))
    version: Mapped[str] = mapped_column(sa.String(50))
    file_path: Mapped[str] = mapped_column(sa.String(500))
    #: Column ``metadata``; the attribute cannot be called that (``Base.metadata`` is the schema).
    extra_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    performance_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=False)


class PerformanceMetrics(UUIDPrimaryKey, Base):
    """One row per bot and UTC day; ratios are floats (statistics, not money), P&L is exact."""

    __tablename__ = "performance_metrics"
    __table_args__ = (
        sa.UniqueConstraint("bot_id", "metric_date"),
        sa.CheckConstraint(
            "total_trades >= 0 AND winning_trades >= 0 AND losing_trades >= 0"
            " AND winning_trades + losing_trades <= total_trades",
            name="trade_counts_consistent",
        ),
    )

    bot_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("bot_instances.id", ondelete="CASCADE"))
    metric_date: Mapped[date]
    total_trades: Mapped[int] = mapped_column(default=0)
    winning_trades: Mapped[int] = mapped_column(default=0)
    losing_trades: Mapped[int] = mapped_column(default=0)
    total_pnl: Mapped[Decimal] = mapped_column(default=_ZERO)
    win_rate: Mapped[float] = mapped_column(sa.Double(), default=0.0)
    sharpe_ratio: Mapped[float | None] = mapped_column(sa.Double())
    #: A non-positive fraction of the peak equity (-0.25: 25% below the peak), as empyrical.
    max_drawdown: Mapped[float | None] = mapped_column(sa.Double())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Added by revision 0002; NULL on rows rolled up before it. See marketkeeper.rollups for the conventions.
    gross_profit: Mapped[Decimal | None]
    gross_loss: Mapped[Decimal | None]
    total_fees: Mapped[Decimal | None]
    avg_win: Mapped[Decimal | None]
    avg_loss: Mapped[Decimal | None]
    largest_win: Mapped[Decimal | None]
    largest_loss: Mapped[Decimal | None]
    profit_factor: Mapped[float | None] = mapped_column(sa.Double())
    expectancy: Mapped[Decimal | None]
    sortino_ratio: Mapped[float | None] = mapped_column(sa.Double())
    calmar_ratio: Mapped[float | None] = mapped_column(sa.Double())
    #: Closing equity of the day in ``equity_currency``, from the balance snapshots.
    equity: Mapped[Decimal | None]
    equity_currency: Mapped[str | None] = mapped_column(sa.String(16))

    bot_instance: Mapped[BotInstance] = relationship(back_populates="performance_metrics")
