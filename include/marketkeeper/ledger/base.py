"""The declarative base of every ledger table, with the constraint naming convention Alembic relies on."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from marketkeeper.ledger.types import ExactNumeric, JSONType, UTCDateTime, new_uuid, utcnow

#: Deterministic constraint names: the same on PostgreSQL and SQLite, so a later migration can drop or
#: alter a constraint by name (SQLite batch mode needs the name to find it).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Every ledger model; ``Base.metadata`` is what Alembic migrates and compares against."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation, never mutated
        datetime: UTCDateTime(),
        date: sa.Date(),
        Decimal: ExactNumeric(),
        uuid.UUID: sa.Uuid(),
        dict[str, Any]: JSONType,
    }


#: Platform tables (markets, gaps, runs) use integer keys: BIGINT on PostgreSQL, and SQLite's
#: ``INTEGER PRIMARY KEY`` (the rowid alias), the only column type SQLite auto-increments.
BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UUIDPrimaryKey:
    """A random UUID ``id`` primary key, as the trading system's tables have."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid, sort_order=-1)


class Timestamps:
    """``created_at`` set on insert and ``updated_at`` refreshed on every ORM update, both aware UTC."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow, sort_order=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, sort_order=1)
