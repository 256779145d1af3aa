"""The generic repository: typed create, get, list, update, delete and bulk writes over one ledger model.

A repository works inside the caller's :class:`~sqlalchemy.orm.Session` and never commits: the unit of work
(:func:`marketkeeper.repositories.unit_of_work`) commits on success and rolls back on error. Writes flush at
once, so ids and defaults are set on return and a constraint violation surfaces as a typed error at the call
that caused it. After such an error the session's transaction is failed and must be rolled back (leaving the
unit of work does that); a caller that wants to carry on wraps the write in ``session.begin_nested()``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.orm.exc import StaleDataError

from marketkeeper.ledger.base import Base
from marketkeeper.ledger.models import User
from marketkeeper.ledger.types import ExactNumeric, NumericOverflowError
from marketkeeper.repositories.errors import NotFoundError, ValidationError
from marketkeeper.repositories.integrity import integrity_error
from marketkeeper.repositories.validation import (
    DEFAULT_PAGE_SIZE,
    RecordId,
    coerce_column,
    page_bounds,
    time_window,
)
from marketkeeper.timeframes import NaiveDatetimeError

ModelT = TypeVar("ModelT", bound=Base)
ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT", bound=Base)
SelectT = TypeVar("SelectT", bound=sa.Select[*tuple[Any, ...]])

# IN lists are chunked: PostgreSQL takes at most 65535 bound parameters per statement.
_IN_CHUNK = 1000


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a query: ``items`` in order, the ``total`` rows matching, and the ``limit``/``offset`` asked."""

    items: tuple[ItemT, ...]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        """Whether rows remain after this page."""
        return self.offset + len(self.items) < self.total

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ItemT]:
        return iter(self.items)


class Repository(Generic[ModelT]):
    """Create, read, page, update and delete rows of :attr:`model` through one session.

    Subclasses set :attr:`model`, the :attr:`default_order` of :meth:`list` (column names, ``-`` for
    descending; the primary key always breaks ties so pages never overlap) and the fields whose values must
    be positive or non-negative. Every value is checked against its column before it is written.

    :param session: the unit of work's session; the repository flushes but never commits.
    """

    model: type[ModelT]
    default_order: ClassVar[tuple[str, ...]] = ()
    positive_fields: ClassVar[frozenset[str]] = frozenset()
    non_negative_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, session: Session) -> None:
        self.session = session
        mapper = sa.inspect(self.model)
        self._columns: dict[str, sa.Column[Any]] = {
            attr.key: attr.columns[0] for attr in mapper.column_attrs if isinstance(attr.columns[0], sa.Column)
        }
        if len(mapper.primary_key) != 1:
            raise TypeError(f"{self.model.__name__} has a composite primary key; Repository needs a single column")
        self._pk_key = mapper.get_property_by_column(mapper.primary_key[0]).key

    @property
    def name(self) -> str:
        """The model's class name, as errors report it."""
        return self.model.__name__

    # --- CRUD --------------------------------------------------------------------------------------------

    def create(self, **values: Any) -> ModelT:
        """Insert one row and return it with its id and defaults set.

        :param values: column attributes of :attr:`model` (``user_id=...``, not the ``user`` relationship).
        :raises ValidationError: an unknown field, a missing required field, or a value that does not fit.
        :raises ConflictError: a unique key is already taken.
        """
        record = self._build(values)
        self.session.add(record)
        self._flush("create")
        return record

    def get(self, record_id: RecordId, /) -> ModelT:
        """The row with primary key ``record_id``.

        :raises NotFoundError: there is none.
        :raises ValidationError: ``record_id`` is not a valid key (e.g. not a UUID).
        """
        key = self._key(record_id)
        record = self.session.get(self.model, key)
        if record is None:
            raise NotFoundError(self.name, key)
        return record

    def list(
        self,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        offset: int = 0,
        order: str | Sequence[str] | None = None,
    ) -> Page[ModelT]:
        """One page of every row.

        :param limit: rows per page, 1 to :data:`~marketkeeper.repositories.validation.MAX_PAGE_SIZE`.
        :param offset: rows to skip.
        :param order: column names, ``-name`` for descending (default: :attr:`default_order`).
        :raises ValidationError: a page bound out of range or an unknown order column.
        """
        return self._page(sa.select(self.model), limit=limit, offset=offset, order=order)

    def update(self, record_id: RecordId, /, **changes: Any) -> ModelT:
        """Set ``changes`` on the row ``record_id`` and return it.

        :raises NotFoundError: there is no such row.
        :raises ValidationError: an unknown field, the primary key, or a value that does not fit.
        :raises ConflictError: the change takes a unique key already taken.
        """
        if self._pk_key in changes:
            raise ValidationError("the primary key cannot be changed", model=self.name, field=self._pk_key)
        clean = self._validated(changes)
        record = self.get(record_id)
        for field, value in clean.items():
            setattr(record, field, value)
        self._flush("update")
        return record

    def delete(self, record_id: RecordId, /) -> None:
        """Delete the row ``record_id`` (database cascades apply).

        :raises NotFoundError: there is no such row.
        :raises ConflictError: other rows still reference it (trades and positions protect their bot).
        """
        record = self.get(record_id)
        self.session.delete(record)
        self._flush("delete")

    def bulk_create(self, rows: Iterable[Mapping[str, Any]]) -> builtins.list[ModelT]:
        """Insert every row in one flush; all rows are validated before any is written.

        :param rows: mappings of column attributes, as for :meth:`create`.
        :raises ValidationError: a row is invalid (nothing is written).
        :raises ConflictError: a unique key is taken (the unit of work then rolls back every row).
        """
        records = [self._build(row) for row in rows]
        if records:
            self.session.add_all(records)
            self._flush("create")
        return records

    def bulk_update(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Apply per-row changes, each mapping holding the primary key and the fields to set.

        Every row is validated and every id checked to exist before anything is written, so a typo in one id
        fails the batch instead of being skipped silently.

        :returns: the number of rows updated (all of them, when it returns).
        :raises ValidationError: a row lacks its id, repeats an id, changes nothing or holds an invalid value.
        :raises NotFoundError: some ids do not exist (the error names up to five).
        :raises ConflictError: a change takes a unique key already taken.
        """
        batch: builtins.list[dict[str, Any]] = []
        seen: set[Any] = set()
        for position, row in enumerate(rows):
            if self._pk_key not in row:
                raise ValidationError(f"row {position} has no {self._pk_key!r}", model=self.name, field=self._pk_key)
            key = self._key(row[self._pk_key])
            if key in seen:
                raise ValidationError(f"row {position} repeats {key}", model=self.name, field=self._pk_key)
            seen.add(key)
            changes = {field: value for field, value in row.items() if field != self._pk_key}
            if not changes:
                raise ValidationError(f"row {position} ({key}) changes nothing", model=self.name)
            batch.append({self._pk_key: key, **self._validated(changes)})
        if not batch:
            return 0
        missing = self._missing_keys(seen)
        if missing:
            shown = ", ".join(sorted(str(key) for key in missing)[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise NotFoundError(self.name, shown + more)
        # Pending ORM changes first, so the bulk statement does not race the session's own later flush.
        self._flush("update")
        try:
            self.session.execute(sa.update(self.model), batch)
        except sa.exc.IntegrityError as exc:
            raise integrity_error(exc, model=self.name, operation="update") from exc
        except StaleDataError as exc:
            # A row deleted by another transaction between the existence check and the update.
            raise NotFoundError(self.name, "one of the batch") from exc
        # Bulk UPDATE by primary key bypasses the identity map: expire what it holds so reads see the new values.
        for key in seen:
            cached = self.session.identity_map.get(self.session.identity_key(self.model, key))
            if cached is not None:
                self.session.expire(cached)
        return len(batch)

    # --- helpers for subclasses ----------------------------------------------------------------------------

    def _page(
        self,
        statement: sa.Select[RowT],
        *,
        limit: int,
        offset: int,
        order: str | Sequence[str] | None = None,
    ) -> Page[RowT]:
        """``statement`` paged: the total counted over the unpaged statement, then one ordered page."""
        page_bounds(limit, offset)
        clauses = self._order_by(order)
        counted = sa.select(sa.func.count()).select_from(statement.order_by(None).subquery())
        total = self.session.scalar(counted) or 0
        items = self.session.scalars(statement.order_by(*clauses).limit(limit).offset(offset)).all()
        return Page(items=tuple(items), total=total, limit=limit, offset=offset)

    def _all(self, statement: sa.Select[RowT], order: str | Sequence[str] | None = None) -> builtins.list[RowT]:
        """Every row of ``statement`` in ``order`` (default: :attr:`default_order`)."""
        return builtins.list(self.session.scalars(statement.order_by(*self._order_by(order))).all())

    def _order_by(self, order: str | Sequence[str] | None) -> builtins.list[sa.ColumnElement[Any]]:
        names = self.default_order if order is None else ((order,) if isinstance(order, str) else tuple(order))
        clauses: builtins.list[sa.ColumnElement[Any]] = []
        used: set[str] = set()
        for name in names:
            descending = name.startswith("-")
            field = name.lstrip("+-")
            if field not in self._columns:
                raise ValidationError(
                    f"cannot order by unknown field {field!r}; known: {', '.join(sorted(self._columns))}",
                    model=self.name,
                    field="order",
                )
            expression: sa.ColumnElement[Any] = self._columns[field]
            if isinstance(expression.type, ExactNumeric) and self._dialect == "sqlite":
                # Exact decimals are text on SQLite: compare them as numbers, not character by character.
                expression = sa.cast(expression, sa.Numeric())
            clauses.append(expression.desc() if descending else expression.asc())
            used.add(field)
        if self._pk_key not in used:
            clauses.append(self._columns[self._pk_key].asc())
        return clauses

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    @staticmethod
    def _within(
        statement: SelectT,
        column: QueryableAttribute[datetime],
        start: datetime | None,
        end: datetime | None,
    ) -> SelectT:
        """``statement`` restricted to ``column`` in the half-open window ``[start, end)``."""
        lower, upper = time_window(start, end)
        if lower is not None:
            statement = statement.where(column >= lower)
        if upper is not None:
            statement = statement.where(column < upper)
        return statement

    def _require(self, model: type[Base], record_id: RecordId, field: str) -> Any:
        """The key of an existing ``model`` row, so a query about a mistyped id fails instead of being empty.

        :raises NotFoundError: no such row.
        """
        key = coerce_column(sa.inspect(model).primary_key[0], record_id, model=self.name, field=field)
        if self.session.get(model, key) is None:
            raise NotFoundError(model.__name__, key)
        return key

    def _of_user(self, user_id: RecordId, *criteria: sa.ColumnElement[bool]) -> sa.Select[ModelT]:
        """The rows of :attr:`model` that belong to the user (``user_id``) and meet ``criteria``.

        :raises NotFoundError: the user does not exist.
        """
        key = self._require(User, user_id, "user_id")
        return sa.select(self.model).where(self._columns["user_id"] == key, *criteria)

    def _key(self, record_id: RecordId) -> Any:
        return coerce_column(self._columns[self._pk_key], record_id, model=self.name, field=self._pk_key)

    def _validated(self, values: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(values) - set(self._columns))
        if unknown:
            raise ValidationError(
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(self._columns))}",
                model=self.name,
                field=unknown[0],
            )
        clean: dict[str, Any] = {}
        for field, value in values.items():
            coerced = coerce_column(self._columns[field], value, model=self.name, field=field)
            if coerced is not None and field in self.positive_fields and not coerced > 0:
                raise ValidationError(f"must be positive, got {coerced}", model=self.name, field=field)
            if coerced is not None and field in self.non_negative_fields and coerced < 0:
                raise ValidationError(f"must not be negative, got {coerced}", model=self.name, field=field)
            clean[field] = coerced
        return clean

    def _build(self, values: Mapping[str, Any]) -> ModelT:
        clean = self._validated(values)
        missing = [
            field
            for field, column in self._columns.items()
            if field not in clean
            and not column.nullable
            and not column.primary_key
            and column.default is None
            and column.server_default is None
        ]
        if missing:
            raise ValidationError(f"missing required field(s) {', '.join(missing)}", model=self.name, field=missing[0])
        return self.model(**clean)

    def _flush(self, operation: str) -> None:
        try:
            self.session.flush()
        except sa.exc.IntegrityError as exc:
            raise integrity_error(exc, model=self.name, operation=operation) from exc
        except sa.exc.DataError as exc:
            # PostgreSQL's 22xxx class: a value out of range for its column.
            raise ValidationError(f"the database refused the {operation}: {exc.orig}", model=self.name) from exc
        except sa.exc.StatementError as exc:
            if isinstance(exc.orig, NaiveDatetimeError | NumericOverflowError | LookupError):
                raise ValidationError(str(exc.orig), model=self.name) from exc
            raise

    def _missing_keys(self, keys: set[Any]) -> set[Any]:
        pk = self._columns[self._pk_key]
        ordered = builtins.list(keys)
        found: set[Any] = set()
        for start in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[start : start + _IN_CHUNK]
            found.update(self.session.scalars(sa.select(pk).where(pk.in_(chunk))).all())
        return keys - found
