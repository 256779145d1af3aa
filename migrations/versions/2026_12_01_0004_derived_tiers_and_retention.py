"""Derived candle tiers (source/expected counts), bucket fingerprints and retention (issue 11).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
