"""Strategy configurations: by name and the active ones."""

from __future__ import annotations

import builtins

import sqlalchemy as sa

from marketkeeper.ledger.models import StrategyConfig
from marketkeeper.repositories.base import Repository


class StrategyConfigRepository(Repository[StrategyConfig]):
    """Strategy configurations, by name."""

    model = StrategyConfig
    default_order = ("name",)

    def by_name(self, name: str) -> builtins.list[StrategyConfig]:
        """Every configuration called ``name`` (names are not unique: one per variant)."""
        return self._all(sa.select(StrategyConfig).where(StrategyConfig.name == name))

    def active(self, *, strategy_type: str | None = None) -> builtins.list[StrategyConfig]:
        """The active configurations, of every strategy type or of ``strategy_type`` only."""
        statement = sa.select(StrategyConfig).where(StrategyConfig.is_active.is_(True))
        if strategy_type is not None:
            statement = statement.where(StrategyConfig.strategy_type == strategy_type)
        return self._all(statement)
