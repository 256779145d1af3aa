"""Bot instances: a user's bots, a bot by its name or by an id-or-unique-name reference, and the bots running now."""

from __future__ import annotations

import builtins
import uuid
from typing import Any

import sqlalchemy as sa

from marketkeeper.ledger.models import BotInstance, BotStatus
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.errors import NotFoundError
from marketkeeper.repositories.validation import RecordId


class AmbiguousBotNameError(NotFoundError):
    """Several bots (of different users) share the name: the name alone finds no single bot.

    :ivar count: how many bots have the name.
    """

    def __init__(self, name: str, count: int) -> None:
        super().__init__("BotInstance", name, field="name")
        self.args = (f"{count} bots (of different users) have the name {name!r}",)
        self.count = count


class BotRepository(Repository[BotInstance]):
    """Bot instances; a bot's name is unique per user."""

    model = BotInstance
    default_order = ("name",)

    def by_user(self, user_id: RecordId) -> builtins.list[BotInstance]:
        """Every bot of the user, by name.

        :raises NotFoundError: the user does not exist.
        """
        return self._all(self._of_user(user_id))

    def find_by_name(self, user_id: RecordId, name: str) -> BotInstance | None:
        """The user's bot called ``name``, or ``None`` when the user has no bot of that name."""
        return self.session.scalars(self._of_user(user_id, BotInstance.name == name)).one_or_none()

    def resolve(self, ref: RecordId) -> BotInstance:
        """The bot whose id is ``ref``, or else the only bot (of any user) named ``ref``.

        :raises NotFoundError: no bot has that id (``field="id"``) or that name (``field="name"``).
        :raises AmbiguousBotNameError: several bots have that name; pass the bot's id.
        """
        try:
            bot_id = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
        except ValueError:
            name = str(ref)
            bots = self.session.scalars(sa.select(BotInstance).where(BotInstance.name == name).limit(2)).all()
            if not bots:
                raise NotFoundError(self.name, name, field="name") from None
            if len(bots) > 1:
                count = self.session.scalar(
                    sa.select(sa.func.count()).select_from(BotInstance).where(BotInstance.name == name)
                )
                raise AmbiguousBotNameError(name, int(count or 0)) from None
            return bots[0]
        return self.get(bot_id)

    def ids(self) -> builtins.list[uuid.UUID]:
        """Every bot's id, oldest bot first."""
        statement = sa.select(BotInstance.id).order_by(BotInstance.created_at, BotInstance.id)
        return builtins.list(self.session.scalars(statement))

    def get_or_create(self, user_id: RecordId, name: str, **defaults: Any) -> tuple[BotInstance, bool]:
        """The user's bot called ``name``, created with ``defaults`` when it does not exist; ``(bot, created)``.

        :raises NotFoundError: the user does not exist.
        :raises ValidationError: ``defaults`` hold an unknown field or a value that does not fit.
        """
        found = self.find_by_name(user_id, name)
        if found is not None:
            return found, False
        return self.create(user_id=user_id, name=name, **defaults), True

    def running(self) -> builtins.list[BotInstance]:
        """Every bot whose status is ``running``, of every user."""
        return self._all(sa.select(BotInstance).where(BotInstance.status == BotStatus.RUNNING))
