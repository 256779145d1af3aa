"""Column types that behave alike on PostgreSQL and SQLite: aware UTC timestamps, exact decimals, JSON, enums.

SQLite has neither a timezone-aware timestamp nor an exact decimal, so the embedded ledger would silently
return naive datetimes and floats; these decorators keep the Python side identical on both backends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from marketkeeper.errors import MarketkeeperError
from marketkeeper.timeframes import ensure_utc

#: Digits and decimal places of every money and quantity column. 38 digits is the widest exact NUMERIC most
#: warehouses take (BigQuery, Snowflake, Redshift) so exports stay exact; 18 places hold wei-denominated
#: amounts and any exchange's tick size; 20 integer digits hold any realistic price or supply.
NUMERIC_PRECISION = 38
NUMERIC_SCALE = 18

_QUANTUM = Decimal(1).scaleb(-NUMERIC_SCALE)
# PostgreSQL rounds numeric input half away from zero; ROUND_HALF_UP is Python's name for that.
_NUMERIC_CONTEXT = Context(prec=NUMERIC_PRECISION, rounding=ROUND_HALF_UP)


class NumericOverflowError(MarketkeeperError, ValueError):
    """A number does not fit ``NUMERIC(38, 18)`` or is not finite."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"{value!r} does not fit NUMERIC({NUMERIC_PRECISION}, {NUMERIC_SCALE}): "
            f"at most {NUMERIC_PRECISION - NUMERIC_SCALE} integer digits, finite values only"
        )
        self.value = value


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC: the default of every timestamp column."""
    return datetime.now(UTC)


def new_uuid() -> uuid.UUID:
    """A random primary key (``uuid4``): ids can be made by producers before the row reaches the ledger."""
    return uuid.uuid4()


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that always hands back aware UTC datetimes, on every backend.

    Naive input raises :class:`NaiveDatetimeError` (wrapped by SQLAlchemy in a ``StatementError``) instead of
    being guessed at. On SQLite the value is stored as naive UTC text, which also sorts chronologically.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime for a UTC timestamp column, got {type(value).__name__}")
        # The one timezone check (marketkeeper.timeframes): a naive value raises NaiveDatetimeError.
        as_utc = ensure_utc(value, "a UTC timestamp column value")
        # SQLite's DATETIME storage drops the offset without converting, so convert first, then strip.
        return as_utc.replace(tzinfo=None) if dialect.name == "sqlite" else as_utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactNumeric(TypeDecorator[Decimal]):
    """``NUMERIC(38, 18)`` that round-trips every ``Decimal`` exactly, on every backend.

    SQLite's NUMERIC affinity keeps 15 significant digits, so there the value is stored as fixed-point text,
    rounded to 18 places like PostgreSQL does. The price of that: on SQLite, SQL-side comparisons and sums
    of these columns need an explicit ``CAST``; Python-side arithmetic on loaded values is exact everywhere.
    """

    impl = sa.Numeric(NUMERIC_PRECISION, NUMERIC_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # sign + 38 digits + decimal point
            return dialect.type_descriptor(sa.String(NUMERIC_PRECISION + 2))
        return dialect.type_descriptor(sa.Numeric(NUMERIC_PRECISION, NUMERIC_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | int | str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        try:
            if not number.is_finite():
                raise NumericOverflowError(value)
            fixed = number.quantize(_QUANTUM, context=_NUMERIC_CONTEXT)
        except InvalidOperation as exc:
            raise NumericOverflowError(value) from exc
        return format(fixed, "f") if dialect.name == "sqlite" else fixed

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


#: JSON on every backend, ``JSONB`` on PostgreSQL (indexable, compact). Python ``None`` is SQL NULL.
JSONType: TypeEngine[Any] = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _enum_values(enum_cls: type[StrEnum]) -> list[str]:
    return [member.value for member in enum_cls]


def enum_type(enum_cls: type[StrEnum], name: str) -> sa.Enum:
    """A ``VARCHAR(32)`` holding ``enum_cls``'s values, guarded by a CHECK constraint named after ``name``.

    Non-native on purpose: adding a value is a CHECK swap, not a PostgreSQL ``ALTER TYPE``, and SQLite
    gets the same guard.
    """
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        validate_strings=True,
        values_callable=_enum_values,
    )
