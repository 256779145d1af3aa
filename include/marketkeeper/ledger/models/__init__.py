"""Every ledger table in one place; importing this module registers them all on ``Base.metadata``."""

from __future__ import annotations

from marketkeeper.ledger.models.enums import (
    AlertSeverity,
    BackupStatus,
    BotStatus,
    EventSeverity,
    GapStatus,
    OrderType,
    PositionSide,
    PositionStatus,
    TradeSide,
    TradeStatus,
    VerifyStatus,
)
from marketkeeper.ledger.models.market_data import (
    Candle,
    CandleGap,
    DataQualityRun,
    Market,
    QuarantinedCandle,
)
from marketkeeper.ledger.models.operations import Alert, AuditLog, BackupRun, SystemEvent
from marketkeeper.ledger.models.trading import (
    BalanceSnapshot,
    BotInstance,
    MLModel,
    PerformanceMetrics,
    Position,
    StrategyConfig,
    Trade,
    User,
)

__all__ = [
    "Alert",
    "AlertSeverity",
    "AuditLog",
    "BackupRun",
    "BackupStatus",
    "BalanceSnapshot",
    "BotInstance",
    "BotStatus",
    "Candle",
    "CandleGap",
    "DataQualityRun",
    "EventSeverity",
    "GapStatus",
    "MLModel",
    "Market",
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
    "User",
    "VerifyStatus",
]
