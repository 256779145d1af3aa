"""The typed failures of the repositories: a missing row, a conflicting row, or input the ledger would refuse."""

from __future__ import annotations

from collections.abc import Sequence

from marketkeeper.errors import MarketkeeperError


class RepositoryError(MarketkeeperError):
    """A ledger read or write through a repository failed; the subclasses say why."""


class NotFoundError(RepositoryError, LookupError):
    """No row of ``model`` has the key ``key`` (a primary key, or a domain key such as a username)."""

    def __init__(self, model: str, key: object, *, field: str = "id") -> None:
        super().__init__(f"{model} with {field}={key!s} does not exist")
        self.model = model
        self.key = key
        self.field = field


class ConflictError(RepositoryError):
    """A write collides with rows already in the ledger: a duplicate unique key, or a row still referenced.

    ``constraint`` is the database constraint's name when the backend reports it, ``fields`` its columns.
    """

    def __init__(self, model: str, *, constraint: str | None, fields: Sequence[str], detail: str) -> None:
        named = constraint or "a constraint"
        columns = f" on ({', '.join(fields)})" if fields else ""
        super().__init__(f"{model}: {named}{columns} rejected the write: {detail}")
        self.model = model
        self.constraint = constraint
        self.fields = tuple(fields)
        self.detail = detail


class ValidationError(RepositoryError, ValueError):
    """Input the ledger must not store: a naive datetime, a negative quantity, an unknown enum value, a page
    size out of range, an unknown field. ``field`` names the offending input when there is one."""

    def __init__(self, message: str, *, model: str | None = None, field: str | None = None) -> None:
        where = ".".join(part for part in (model, field) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.model = model
        self.field = field
