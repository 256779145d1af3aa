"""Typed repositories over the ledger: CRUD, pagination, the trading system's domain queries, trade statistics
and CSV export, raising typed errors instead of returning ``None``.

``with unit_of_work(engine) as repos: repos.trades.statistics(bot_id)`` covers everyday use; each repository
also takes a plain :class:`~sqlalchemy.orm.Session`.
"""

from __future__ import annotations

from marketkeeper.repositories.alerts import AlertRepository
from marketkeeper.repositories.audit import AuditLogRepository
from marketkeeper.repositories.backups import BackupOverview, BackupRepository
from marketkeeper.repositories.balances import BalanceSnapshotRepository
from marketkeeper.repositories.base import Page, Repository
from marketkeeper.repositories.bots import BotRepository
from marketkeeper.repositories.errors import ConflictError, NotFoundError, RepositoryError, ValidationError
from marketkeeper.repositories.events import SystemEventRepository
from marketkeeper.repositories.gaps import GapRepository
from marketkeeper.repositories.markets import MarketRepository, SyncReport
from marketkeeper.repositories.ml_models import MLModelRepository
from marketkeeper.repositories.performance import PerformanceMetricsRepository
from marketkeeper.repositories.positions import PositionRepository
from marketkeeper.repositories.quality import QualityRepository
from marketkeeper.repositories.statistics import TradeStatistics, trade_statistics
from marketkeeper.repositories.strategies import StrategyConfigRepository
from marketkeeper.repositories.trades import CSV_COLUMNS, TradeRepository, csv_text
from marketkeeper.repositories.unit_of_work import Repositories, unit_of_work
from marketkeeper.repositories.users import UserRepository
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RecordId

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AlertRepository",
    "AuditLogRepository",
    "BackupOverview",
    "BackupRepository",
    "BalanceSnapshotRepository",
    "BotRepository",
    "ConflictError",
    "GapRepository",
    "MLModelRepository",
    "MarketRepository",
    "NotFoundError",
    "Page",
    "PerformanceMetricsRepository",
    "PositionRepository",
    "QualityRepository",
    "RecordId",
    "Repositories",
    "Repository",
    "RepositoryError",
    "StrategyConfigRepository",
    "SyncReport",
    "SystemEventRepository",
    "TradeRepository",
    "TradeStatistics",
    "UserRepository",
    "ValidationError",
    "csv_text",
    "trade_statistics",
    "unit_of_work",
]
