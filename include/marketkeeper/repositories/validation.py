"""Input checks shared by the repositories: ids, aware UTC times, windows, pages and column values.

They run before anything reaches the database, so both backends refuse the same input with the same
:class:`~marketkeeper.repositories.errors.ValidationError` (SQLite would store a too-long string or a naive
datetime; PostgreSQL would fail the whole transaction with a driver error).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

import sqlalchemy as sa

from marketkeeper.ledger.types import ExactNumeric, UTCDateTime
from marketkeeper.repositories.errors import ValidationError

#: Page sizes a caller may ask for; a bigger read should stream (``export_csv``) instead of paging.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

EnumT = TypeVar("EnumT", bound=Enum)

#: A primary key as callers hold it: a UUID, its text form, or an integer for the platform tables.
RecordId = uuid.UUID | str | int


def as_uuid(value: object, *, model: str | None = None, field: str = "id") -> uuid.UUID:
    """``value`` as a UUID; its text form is accepted.

    :raises ValidationError: ``value`` is neither a UUID nor the text of one.
    """
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{value!r} is not a UUID", model=model, field=field)


def aware_utc(value: object, *, model: str | None = None, field: str) -> datetime:
    """``value`` converted to UTC; a naive datetime is refused, its instant being ambiguous.

    :raises ValidationError: ``value`` is not a datetime or carries no timezone.
    """
    if not isinstance(value, datetime):
        raise ValidationError(f"expected a datetime, got {type(value).__name__}", model=model, field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"naive datetime {value.isoformat()}: pass a timezone-aware datetime (e.g. tzinfo=UTC)",
            model=model,
            field=field,
        )
    return value.astimezone(UTC)


def time_window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """A half-open window ``[start, end)`` in UTC; either side may be open (``None``).

    :raises ValidationError: a bound is naive, or ``start`` is not before ``end``.
    """
    lower = aware_utc(start, field="start") if start is not None else None
    upper = aware_utc(end, field="end") if end is not None else None
    if lower is not None and upper is not None and lower >= upper:
        raise ValidationError(f"start {lower.isoformat()} must be before end {upper.isoformat()}", field="start")
    return lower, upper


def date_range(start: date | None, end: date | None) -> tuple[date | None, date | None]:
    """An inclusive range of calendar days ``[start, end]``; either side may be open.

    :raises ValidationError: a bound is a datetime (its day depends on a timezone) or ``start`` is after ``end``.
    """
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, datetime) or not isinstance(value, date)):
            raise ValidationError(f"expected a date, got {type(value).__name__}", field=name)
    if start is not None and end is not None and start > end:
        raise ValidationError(f"start {start} is after end {end}", field="start")
    return start, end


def page_bounds(limit: int, offset: int) -> None:
    """Check a page request.

    :raises ValidationError: ``limit`` is outside ``1..MAX_PAGE_SIZE`` or ``offset`` is negative.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(f"must be an integer from 1 to {MAX_PAGE_SIZE}, got {limit!r}", field="limit")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"must be a non-negative integer, got {offset!r}", field="offset")


def as_enum(enum_cls: type[EnumT], value: object, *, model: str | None = None, field: str) -> EnumT:
    """``value`` as a member of ``enum_cls``; its value text is accepted.

    :raises ValidationError: ``value`` names no member; the message lists the allowed values.
    """
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum_cls)
        raise ValidationError(f"{value!r} is not one of: {allowed}", model=model, field=field) from None


def as_decimal(value: object, *, model: str | None = None, field: str) -> Decimal:
    """``value`` as an exact, finite Decimal; floats are refused because they already lost exactness.

    :raises ValidationError: ``value`` is a float, a bool, not a number, or not finite.
    """
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValidationError(f"{value!r} is not a decimal number", model=model, field=field) from None
    else:
        raise ValidationError(
            f"expected a Decimal, int or decimal string, got {type(value).__name__} (floats are inexact)",
            model=model,
            field=field,
        )
    if not number.is_finite():
        raise ValidationError(f"{value!r} is not a finite number", model=model, field=field)
    return number


def coerce_column(column: sa.ColumnElement[Any], value: object, *, model: str, field: str) -> Any:
    """``value`` checked and normalized for ``column``: the type, nullability and length the ledger enforces.

    :raises ValidationError: the value does not fit the column.
    """
    if value is None:
        if isinstance(column, sa.Column) and not column.nullable:
            raise ValidationError("may not be null", model=model, field=field)
        return None
    column_type = column.type
    # TypeDecorators and Enum (a String subclass) first: the plain-type checks below would also match them.
    if isinstance(column_type, UTCDateTime):
        return aware_utc(value, model=model, field=field)
    if isinstance(column_type, ExactNumeric):
        return as_decimal(value, model=model, field=field)
    if isinstance(column_type, sa.Enum) and column_type.enum_class is not None:
        return as_enum(column_type.enum_class, value, model=model, field=field)
    if isinstance(column_type, sa.Uuid):
        return as_uuid(value, model=model, field=field)
    if isinstance(column_type, sa.Boolean):
        if not isinstance(value, bool):
            raise ValidationError(f"expected a bool, got {type(value).__name__}", model=model, field=field)
        return value
    if isinstance(column_type, sa.DateTime):
        return aware_utc(value, model=model, field=field)
    if isinstance(column_type, sa.Date):
        if isinstance(value, datetime) or not isinstance(value, date):
            raise ValidationError(f"expected a date, got {type(value).__name__}", model=model, field=field)
        return value
    if isinstance(column_type, sa.String):
        if not isinstance(value, str):
            raise ValidationError(f"expected a str, got {type(value).__name__}", model=model, field=field)
        if column_type.length is not None and len(value) > column_type.length:
            raise ValidationError(
                f"is {len(value)} characters long, at most {column_type.length} allowed", model=model, field=field
            )
        return value
    if isinstance(column_type, sa.Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"expected an int, got {type(value).__name__}", model=model, field=field)
        return value
    if isinstance(column_type, sa.Float):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ValidationError(f"expected a number, got {type(value).__name__}", model=model, field=field)
        return float(value)
    return value
