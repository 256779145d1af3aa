"""Every ledger table in one place: naming any model here (``from marketkeeper.ledger.models import Trade``)
registers them all on ``Base.metadata``.

The models load on first use, not on import: a command that only needs an enum (``GapStatus`` for an option's
choices) or the engine pays no ORM mapping. Enums come from :mod:`.enums` alone; any other name loads every model
module, so no one ever sees a partial registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    )
    from marketkeeper.ledger.models.market_data import (
        Candle,
        CandleGap,
        DataQualityRun,
        Market,
        QuarantinedCandle,
        TradingSignal,
    )
    from marketkeeper.ledger.models.operations import Alert, AuditLog, BackupRun, SystemEvent
    from marketkeeper.ledger.models.tiers import PendingDownsample, RetentionHorizon
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
    "PendingDownsample",
    "PerformanceMetrics",
    "Position",
    "PositionSide",
    "PositionStatus",
    "QuarantinedCandle",
    "RetentionHorizon",
    "StrategyConfig",
    "SystemEvent",
    "Trade",
    "TradeSide",
    "TradeStatus",
    "TradingSignal",
    "User",
]

_MODEL_MODULES = ("market_data", "operations", "tiers", "trading")


def load() -> None:
    """Import every model module (idempotent): ``Base.metadata`` then holds every table."""
    for module_name in _MODEL_MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        globals().update({n: getattr(module, n) for n in __all__ if hasattr(module, n)})


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    enums = importlib.import_module(f"{__name__}.enums")
    if hasattr(enums, name):
        return getattr(enums, name)
    load()
    return globals()[name]
