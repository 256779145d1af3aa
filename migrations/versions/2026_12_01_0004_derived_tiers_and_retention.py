"""Derived candle tiers (source/expected counts), the pending-downsample log and retention horizons (issue 11).

A derived tier's candle is stored in ``candles`` like any other, with ``source_count`` (base candles present in
its bucket) and ``expected_count`` (base candles the bucket spans); fetched candles leave both NULL.
``pending_downsamples`` lists base writes whose tiers are not recomputed yet (retention keeps those ranges);
``retention_horizons`` records how far retention deleted a series, so gap detection starts there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("candles") as batch:
        batch.add_column(sa.Column("source_count", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("expected_count", sa.Integer(), nullable=True))
    op.create_table(
        "pending_downsamples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=True),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('"end" > start', name=op.f("ck_pending_downsamples_end_after_start")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_downsamples")),
    )
    op.create_index(
        "ix_pending_downsamples_series", "pending_downsamples", ["exchange", "symbol", "timeframe", "start"]
    )
    op.create_table(
        "retention_horizons",
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("horizon", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "symbol", "timeframe", name=op.f("pk_retention_horizons")),
    )


def downgrade() -> None:
    op.drop_table("retention_horizons")
    op.drop_index("ix_pending_downsamples_series", table_name="pending_downsamples")
    op.drop_table("pending_downsamples")
    with op.batch_alter_table("candles") as batch:
        batch.drop_column("expected_count")
        batch.drop_column("source_count")
