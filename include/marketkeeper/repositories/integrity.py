"""Turn the database's integrity and data errors into typed repository errors naming the constraint and fields.

PostgreSQL (psycopg) reports a SQLSTATE and the constraint's name; SQLite reports an error name and the
``table.column`` list in its message. Both are mapped onto the same errors, with the columns looked up in the
ledger's metadata so that a caller sees ``uq_users_username on (username)`` on either backend.
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from marketkeeper.ledger.base import Base
from marketkeeper.repositories.errors import ConflictError, RepositoryError, ValidationError

UNIQUE = "unique"
FOREIGN_KEY = "foreign_key"
NOT_NULL = "not_null"
CHECK = "check"
OTHER = "other"

_PG_SQLSTATES = {"23505": UNIQUE, "23503": FOREIGN_KEY, "23502": NOT_NULL, "23514": CHECK}
_SQLITE_KINDS = {
    "SQLITE_CONSTRAINT_UNIQUE": UNIQUE,
    "SQLITE_CONSTRAINT_PRIMARYKEY": UNIQUE,
    "SQLITE_CONSTRAINT_FOREIGNKEY": FOREIGN_KEY,
    "SQLITE_CONSTRAINT_NOTNULL": NOT_NULL,
    "SQLITE_CONSTRAINT_CHECK": CHECK,
}


@lru_cache(maxsize=1)
def _constraints() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Constraint and unique-index name -> (table, columns), from the ledger's metadata."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for table in Base.metadata.tables.values():
        for constraint in table.constraints:
            if constraint.name and isinstance(constraint, ColumnCollectionConstraint):
                found[str(constraint.name)] = (table.name, tuple(column.name for column in constraint.columns))
        for index in table.indexes:
            if index.unique and index.name:
                found[str(index.name)] = (table.name, tuple(column.name for column in index.columns))
    return found


def _constraint_for(table: str, columns: tuple[str, ...]) -> str | None:
    for name, (owner, owned) in _constraints().items():
        if owner == table and set(owned) == set(columns):
            return name
    return None


def _pg_details(orig: object) -> tuple[str, str | None, tuple[str, ...], str]:
    kind = _PG_SQLSTATES.get(str(getattr(orig, "sqlstate", "")), OTHER)
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    column = getattr(diag, "column_name", None)
    primary = getattr(diag, "message_primary", None) or str(orig).splitlines()[0]
    detail = getattr(diag, "message_detail", None)
    fields = _constraints().get(constraint, ("", ()))[1] if constraint else ()
    if not fields and column:
        fields = (column,)
    return kind, constraint, fields, f"{primary} ({detail})" if detail else primary


def _sqlite_details(orig: object) -> tuple[str, str | None, tuple[str, ...], str]:
    message = str(orig)
    kind = _SQLITE_KINDS.get(str(getattr(orig, "sqlite_errorname", "")), OTHER)
    head, _, tail = message.partition(" constraint failed")
    tail = tail.removeprefix(": ")
    if kind == OTHER:
        # ON DELETE RESTRICT fails as SQLITE_CONSTRAINT_TRIGGER; the message still says what it was.
        kind = {"UNIQUE": UNIQUE, "NOT NULL": NOT_NULL, "CHECK": CHECK, "FOREIGN KEY": FOREIGN_KEY}.get(head, OTHER)
    if kind in (UNIQUE, NOT_NULL) and tail:
        # "UNIQUE constraint failed: users.username" names table.column pairs, not the constraint.
        pairs = [item.strip().partition(".") for item in tail.split(",")]
        table = pairs[0][0]
        fields = tuple(column for _, _, column in pairs)
        return kind, _constraint_for(table, fields) if kind == UNIQUE else None, fields, message
    if kind == CHECK and tail:
        # SQLite names the CHECK by the name given in the DDL, which already follows the naming convention.
        return kind, tail.strip(), (), message
    return kind, None, (), message


def integrity_error(exc: sa.exc.IntegrityError, *, model: str, operation: str) -> RepositoryError:
    """The typed error for ``exc``, raised by ``operation`` (``create``, ``update`` or ``delete``) on ``model``.

    A duplicate key is a :class:`ConflictError`, and so is deleting a row that other rows still reference;
    a reference to a missing row, a NULL in a required column or a failed CHECK is a :class:`ValidationError`.
    """
    orig = exc.orig
    if hasattr(orig, "sqlstate"):
        kind, constraint, fields, detail = _pg_details(orig)
    else:
        kind, constraint, fields, detail = _sqlite_details(orig)
    if kind == UNIQUE:
        return ConflictError(model, constraint=constraint, fields=fields, detail=detail)
    if kind == FOREIGN_KEY and operation == "delete":
        return ConflictError(model, constraint=constraint, fields=fields, detail=f"still referenced: {detail}")
    if kind in (FOREIGN_KEY, NOT_NULL, CHECK):
        named = constraint or kind.replace("_", " ")
        field = ", ".join(fields) or None
        return ValidationError(f"{named} rejected the {operation}: {detail}", model=model, field=field)
    return RepositoryError(f"{model}: the database refused the {operation}: {detail}")
