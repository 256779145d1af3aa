"""Ledger housekeeping: age-based deletes of the platform's own tables in small batches, and ``VACUUM (ANALYZE)``
of the tables that churn. Table and column names come from the models, never from input."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

__all__ = ["DELETE_BATCH", "AgedRows", "count_aged", "delete_aged", "vacuum_analyze"]

#: Rows per delete statement (each its own transaction), so no delete holds locks for long.
DELETE_BATCH: Final = 5_000


class AgedRows:
    """Rows of ``model`` whose ``column`` is before a cutoff (and that match ``where``, e.g. filled gaps)."""

    def __init__(self, model: Any, column: str, *where: sa.ColumnElement[bool]) -> None:
        self.model = model
        self.table: sa.Table = model.__table__
        self.column = column
        self.where = where

    def criteria(self, cutoff: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(getattr(self.model, self.column) < cutoff, *self.where)


def count_aged(session: Session, aged: AgedRows, cutoff: datetime) -> int:
    """How many rows are older than ``cutoff``."""
    return int(session.scalar(sa.select(sa.func.count()).select_from(aged.table).where(aged.criteria(cutoff))) or 0)


def delete_aged(engine: Engine, aged: AgedRows, cutoff: datetime, *, batch: int = DELETE_BATCH) -> int:
    """Delete the rows older than ``cutoff``, ``batch`` at a time, each batch committed on its own."""
    key = next(iter(aged.table.primary_key.columns))
    total = 0
    while True:
        chosen = sa.select(key).where(aged.criteria(cutoff)).limit(batch).scalar_subquery()
        with engine.begin() as conn:
            done = int(conn.execute(sa.delete(aged.table).where(key.in_(chosen))).rowcount or 0)
        total += done
        if done < batch:
            return total


def vacuum_analyze(engine: Engine, tables: Sequence[sa.Table]) -> list[str]:
    """``VACUUM (ANALYZE)`` each table on PostgreSQL (outside a transaction, as VACUUM requires); nothing on
    SQLite, whose file a VACUUM would rewrite whole. Returns the tables vacuumed."""
    if engine.dialect.name != "postgresql":
        return []
    preparer = engine.dialect.identifier_preparer
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.execute(sa.text(f"VACUUM (ANALYZE) {preparer.quote(table.name)}"))
    return [t.name for t in tables]
