"""Users: lookups by username and email, the active users, and get-or-create by username."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from marketkeeper.ledger.models import User
from marketkeeper.repositories.base import Page, Repository
from marketkeeper.repositories.validation import DEFAULT_PAGE_SIZE


class UserRepository(Repository[User]):
    """Users, oldest account first."""

    model = User
    default_order = ("created_at",)

    def find_by_username(self, username: str) -> User | None:
        """The user called ``username`` (exact match), or ``None``: an unknown name is a normal answer here."""
        return self.session.scalars(sa.select(User).where(User.username == username)).one_or_none()

    def find_by_email(self, email: str) -> User | None:
        """The user with ``email`` (exact match, as stored), or ``None``."""
        return self.session.scalars(sa.select(User).where(User.email == email)).one_or_none()

    def active(self, *, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0) -> Page[User]:
        """One page of the users whose account is active."""
        return self._page(sa.select(User).where(User.is_active.is_(True)), limit=limit, offset=offset)

    def get_or_create(self, username: str, **defaults: Any) -> tuple[User, bool]:
        """The user called ``username``, created with ``defaults`` when there is none; ``(user, created)``.

        :raises ValidationError: ``defaults`` hold an unknown field, miss a required one, or do not fit.
        :raises ConflictError: another user already has the ``email`` of ``defaults``.
        """
        found = self.find_by_username(username)
        if found is not None:
            return found, False
        return self.create(username=username, **defaults), True
