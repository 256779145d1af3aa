"""ML models: a model's version, its versions, and the active models."""

from __future__ import annotations

import builtins

import sqlalchemy as sa

from marketkeeper.ledger.models import MLModel
from marketkeeper.repositories.base import Repository


class MLModelRepository(Repository[MLModel]):
    """ML model versions, by name then newest first; ``(name, version)`` is unique."""

    model = MLModel
    default_order = ("name", "-created_at")

    def find_version(self, name: str, version: str) -> MLModel | None:
        """The model ``name`` at ``version``, or ``None`` when that version was never registered."""
        statement = sa.select(MLModel).where(MLModel.name == name, MLModel.version == version)
        return self.session.scalars(statement).one_or_none()

    def versions(self, name: str) -> builtins.list[MLModel]:
        """Every version of the model ``name``, newest first."""
        return self._all(sa.select(MLModel).where(MLModel.name == name))

    def active(self) -> builtins.list[MLModel]:
        """The models marked active."""
        return self._all(sa.select(MLModel).where(MLModel.is_active.is_(True)))
