"""Bot instances: a user's bots, a bot by its name, and the bots running now."""

from __future__ import annotations

import builtins

import sqlalchemy as sa

from marketkeeper.ledger.models import BotInstance, BotStatus, User
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.validation import RecordId


class BotRepository(Repository[BotInstance]):
    """Bot instances; a bot's name is unique per user."""

    model = BotInstance
    default_order = ("name",)

    def by_user(self, user_id: RecordId) -> builtins.list[BotInstance]:
        """Every bot of the user, by name.

        :raises NotFoundError: the user does not exist.
        """
        key = self._require(User, user_id, "user_id")
        return self._all(sa.select(BotInstance).where(BotInstance.user_id == key))

    def find_by_name(self, user_id: RecordId, name: str) -> BotInstance | None:
        """The user's bot called ``name``, or ``None`` when the user has no bot of that name."""
        key = self._require(User, user_id, "user_id")
        statement = sa.select(BotInstance).where(BotInstance.user_id == key, BotInstance.name == name)
        return self.session.scalars(statement).one_or_none()

    def running(self) -> builtins.list[BotInstance]:
        """Every bot whose status is ``running``, of every user."""
        return self._all(sa.select(BotInstance).where(BotInstance.status == BotStatus.RUNNING))
