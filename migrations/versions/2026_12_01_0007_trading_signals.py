"""Trading signals stored in SQL when InfluxDB is not configured (issue 14): ``trading_signals``, one row per
market, source and time (the unique key the idempotent upsert conflicts on).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trading_signals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_signals")),
        sa.UniqueConstraint(
            "exchange", "symbol", "source", "time", name=op.f("uq_trading_signals_exchange_symbol_source_time")
        ),
    )
    op.create_index("ix_trading_signals_market_time", "trading_signals", ["exchange", "symbol", "time"])


def downgrade() -> None:
    op.drop_index("ix_trading_signals_market_time", table_name="trading_signals")
    op.drop_table("trading_signals")
