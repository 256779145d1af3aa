"""One unit of work over the ledger: a session that commits on success and rolls back on error, with every
repository bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from marketkeeper.ledger.engine import session_scope
from marketkeeper.repositories.alerts import AlertRepository
from marketkeeper.repositories.audit import AuditLogRepository
from marketkeeper.repositories.backups import BackupRepository
from marketkeeper.repositories.balances import BalanceSnapshotRepository
from marketkeeper.repositories.bots import BotRepository
from marketkeeper.repositories.events import SystemEventRepository
from marketkeeper.repositories.gaps import GapRepository
from marketkeeper.repositories.markets import MarketRepository
from marketkeeper.repositories.ml_models import MLModelRepository
from marketkeeper.repositories.performance import PerformanceMetricsRepository
from marketkeeper.repositories.positions import PositionRepository
from marketkeeper.repositories.quality import QualityRepository
from marketkeeper.repositories.signals import SignalRepository
from marketkeeper.repositories.strategies import StrategyConfigRepository
from marketkeeper.repositories.tiers import TierRepository
from marketkeeper.repositories.trades import TradeRepository
from marketkeeper.repositories.users import UserRepository


class Repositories:
    """Every repository over one session, made on first use: ``repos.trades.by_bot(...)``.

    :param session: the session they share; whoever opened it commits or rolls back.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    @cached_property
    def users(self) -> UserRepository:
        return UserRepository(self.session)

    @cached_property
    def bots(self) -> BotRepository:
        return BotRepository(self.session)

    @cached_property
    def trades(self) -> TradeRepository:
        return TradeRepository(self.session)

    @cached_property
    def positions(self) -> PositionRepository:
        return PositionRepository(self.session)

    @cached_property
    def balances(self) -> BalanceSnapshotRepository:
        return BalanceSnapshotRepository(self.session)

    @cached_property
    def strategies(self) -> StrategyConfigRepository:
        return StrategyConfigRepository(self.session)

    @cached_property
    def ml_models(self) -> MLModelRepository:
        return MLModelRepository(self.session)

    @cached_property
    def performance(self) -> PerformanceMetricsRepository:
        return PerformanceMetricsRepository(self.session)

    @cached_property
    def alerts(self) -> AlertRepository:
        return AlertRepository(self.session)

    @cached_property
    def audit(self) -> AuditLogRepository:
        return AuditLogRepository(self.session)

    @cached_property
    def events(self) -> SystemEventRepository:
        return SystemEventRepository(self.session)

    @cached_property
    def quality(self) -> QualityRepository:
        return QualityRepository(self.session)

    @cached_property
    def markets(self) -> MarketRepository:
        return MarketRepository(self.session)

    @cached_property
    def gaps(self) -> GapRepository:
        return GapRepository(self.session)

    @cached_property
    def backups(self) -> BackupRepository:
        return BackupRepository(self.session)

    @cached_property
    def signals(self) -> SignalRepository:
        return SignalRepository(self.session)

    @cached_property
    def tiers(self) -> TierRepository:
        return TierRepository(self.session)


@contextmanager
def unit_of_work(engine_or_factory: Engine | sessionmaker[Session]) -> Iterator[Repositories]:
    """The repositories over a new session: committed when the block ends normally, rolled back (and the
    error re-raised) when it raises, so a failed write never leaves half a change behind.

    :param engine_or_factory: an engine from :func:`marketkeeper.ledger.create_ledger_engine`, or a factory
        from :func:`marketkeeper.ledger.session_factory`.
    """
    with session_scope(engine_or_factory) as session:
        yield Repositories(session)
