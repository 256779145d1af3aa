"""The ledger: the SQL schema (PostgreSQL, or an embedded SQLite file), its engine, sessions and migrations.

``from marketkeeper.ledger import Base, Trade, session_scope`` covers everyday use; Alembic is driven through
``from marketkeeper.ledger import migrate``, imported on demand.
"""

from __future__ import annotations

from marketkeeper.ledger.base import NAMING_CONVENTION, Base
from marketkeeper.ledger.engine import create_ledger_engine, session_factory, session_scope
from marketkeeper.ledger.models import (
    Alert,
    AlertSeverity,
    AuditLog,
    BackupRun,
    BackupStatus,
    BalanceSnapshot,
    BotInstance,
    BotStatus,
    Candle,
    CandleGap,
    DataQualityRun,
    EventSeverity,
    GapStatus,
    Market,
    MLModel,
    OrderType,
    PerformanceMetrics,
    Position,
    PositionSide,
    PositionStatus,
    QuarantinedCandle,
    StrategyConfig,
    SystemEvent,
    Trade,
    TradeSide,
    TradeStatus,
    User,
    VerifyStatus,
)
from marketkeeper.ledger.types import (
    ExactNumeric,
    JSONType,
    NumericOverflowError,
    UTCDateTime,
    utcnow,
)
from marketkeeper.timeframes import NaiveDatetimeError

__all__ = [
    "NAMING_CONVENTION",
    "Alert",
    "AlertSeverity",
    "AuditLog",
    "BackupRun",
    "BackupStatus",
    "BalanceSnapshot",
    "Base",
    "BotInstance",
    "BotStatus",
    "Candle",
    "CandleGap",
    "DataQualityRun",
    "EventSeverity",
    "ExactNumeric",
    "GapStatus",
    "JSONType",
    "MLModel",
    "Market",
    "NaiveDatetimeError",
    "NumericOverflowError",
    "OrderType",
    "PerformanceMetrics",
    "Position",
    "PositionSide",
    "PositionStatus",
    "QuarantinedCandle",
    "StrategyConfig",
    "SystemEvent",
    "Trade",
    "TradeSide",
    "TradeStatus",
    "UTCDateTime",
    "User",
    "VerifyStatus",
    "create_ledger_engine",
    "session_factory",
    "session_scope",
    "utcnow",
]
