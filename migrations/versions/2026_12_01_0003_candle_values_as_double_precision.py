"""Candle prices and volumes as DOUBLE PRECISION, so the SQL store reads back the very floats written.

``NUMERIC(38, 18)`` (fixed-point text on SQLite) rounded small values: 1.2345678901234567e-10 came back as
1.23456789e-10 and 1e-19 as 0, while the InfluxDB store kept them. Candles arrive as IEEE doubles, so the
SQL store now keeps doubles too. Upgrading converts each stored decimal to the nearest double (exact for
every value the store wrote, since it wrote the shortest repr of a double). Downgrading goes through the
shortest text of each double on PostgreSQL, so only values needing more than 18 decimal places are rounded
again; SQLite's ``CAST(REAL AS TEXT)`` keeps 15 significant digits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 07:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REQUIRED = ("open", "high", "low", "close", "volume")
_OPTIONAL = ("quote_volume",)


def _decimal() -> sa.types.TypeEngine[object]:
    return sa.Numeric(precision=38, scale=18).with_variant(sa.String(length=40), "sqlite")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("candles") as batch_op:
        for name in (*_REQUIRED, *_OPTIONAL):
            batch_op.alter_column(
                name,
                existing_type=_decimal(),
                type_=sa.Double(),
                existing_nullable=name in _OPTIONAL,
                # numeric -> float8 parses the decimal text: correctly rounded.
                postgresql_using=f'"{name}"::double precision' if postgresql else None,
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("candles") as batch_op:
        for name in (*_REQUIRED, *_OPTIONAL):
            batch_op.alter_column(
                name,
                existing_type=sa.Double(),
                type_=_decimal(),
                existing_nullable=name in _OPTIONAL,
                # float8::numeric keeps 15 digits; float8::text is the shortest round-trip text (PG >= 12).
                postgresql_using=f'"{name}"::text::numeric(38, 18)' if postgresql else None,
            )
