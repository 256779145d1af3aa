"""Helpers of the balance and rollup tests: a migrated ledger on each backend, its store config, users, bots
and trades.

On PostgreSQL the tests share the session's test database, so every row a test makes hangs off a user it
created, and :class:`Owners` deletes those users' rows afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import (
    BalanceSnapshot,
    BotInstance,
    OrderType,
    PerformanceMetrics,
    Trade,
    TradeSide,
    TradeStatus,
    User,
    create_ledger_engine,
    migrate,
    session_scope,
)
from marketkeeper.store_set import StoreConfig


class Owners:
    """Creates users and bots on one ledger and removes everything of theirs at the end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.user_ids: list[uuid.UUID] = []

    def user(self) -> uuid.UUID:
        tag = uuid.uuid4().hex[:10]
        with session_scope(self.engine) as session:
            user = User(username=f"mkt_{tag}", email=f"{tag}@example.com", password_hash="x")
            session.add(user)
            session.flush()
            self.user_ids.append(user.id)
            return user.id

    def bot(
        self, *, exchange: str = "paper", config: dict[str, object] | None = None, user_id: uuid.UUID | None = None
    ) -> tuple[uuid.UUID, uuid.UUID]:
        """A new bot (and, unless given, a new user): ``(user_id, bot_id)``."""
        owner = user_id or self.user()
        with session_scope(self.engine) as session:
            bot = BotInstance(
                name=f"bot-{uuid.uuid4().hex[:8]}",
                user_id=owner,
                strategy_type="static",
                exchange=exchange,
                config=config or {},
            )
            session.add(bot)
            session.flush()
            return owner, bot.id

    def trade(
        self,
        bot_id: uuid.UUID,
        at: datetime,
        *,
        pnl: str | None,
        fee: str = "0",
        symbol: str = "BTC/USDT",
        status: TradeStatus = TradeStatus.FILLED,
    ) -> None:
        with session_scope(self.engine) as session:
            session.add(
                Trade(
                    bot_id=bot_id,
                    symbol=symbol,
                    side=TradeSide.BUY if pnl is None else TradeSide.SELL,
                    order_type=OrderType.MARKET,
                    quantity=Decimal(1),
                    price=Decimal(100),
                    executed_price=Decimal(100),
                    fee=Decimal(fee),
                    pnl=None if pnl is None else Decimal(pnl),
                    status=status,
                    timestamp=at,
                )
            )

    def snapshot(self, user_id: uuid.UUID, exchange: str, currency: str, at: datetime, total: str) -> None:
        with session_scope(self.engine) as session:
            session.add(
                BalanceSnapshot(
                    user_id=user_id,
                    exchange=exchange,
                    currency=currency,
                    total_balance=Decimal(total),
                    available_balance=Decimal(total),
                    timestamp=at,
                )
            )

    def snapshots(self, user_id: uuid.UUID) -> list[tuple[str, str, datetime, Decimal, Decimal, Decimal]]:
        with session_scope(self.engine) as session:
            rows = session.execute(
                sa.select(
                    BalanceSnapshot.exchange,
                    BalanceSnapshot.currency,
                    BalanceSnapshot.timestamp,
                    BalanceSnapshot.total_balance,
                    BalanceSnapshot.available_balance,
                    BalanceSnapshot.locked_balance,
                )
                .where(BalanceSnapshot.user_id == user_id)
                .order_by(BalanceSnapshot.timestamp, BalanceSnapshot.currency)
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def cleanup(self) -> None:
        if not self.user_ids:
            return
        with session_scope(self.engine) as session:
            bots = sa.select(BotInstance.id).where(BotInstance.user_id.in_(self.user_ids))
            session.execute(sa.delete(PerformanceMetrics).where(PerformanceMetrics.bot_id.in_(bots)))
            session.execute(sa.delete(Trade).where(Trade.bot_id.in_(bots)))
            session.execute(sa.delete(BalanceSnapshot).where(BalanceSnapshot.user_id.in_(self.user_ids)))
            session.execute(sa.delete(BotInstance).where(BotInstance.user_id.in_(self.user_ids)))
            session.execute(sa.delete(User).where(User.id.in_(self.user_ids)))


def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated ledger for a fixture parametrized with ``postgresql`` (the session's test database) or
    ``sqlite`` (a file of this test's own)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    migrate.upgrade(url)
    engine = create_ledger_engine(url)
    yield engine
    engine.dispose()


def open_owners(engine: Engine) -> Iterator[Owners]:
    made = Owners(engine)
    yield made
    made.cleanup()


def ledger_config(engine: Engine, *, influxdb: Callable[[], InfluxDBClient] | None = None) -> StoreConfig:
    """The :class:`StoreConfig` of the ledger behind ``engine`` (and an InfluxDB, when given), as the service
    functions take it."""
    return StoreConfig(ledger_url=engine.url.render_as_string(hide_password=False), influxdb=influxdb)
