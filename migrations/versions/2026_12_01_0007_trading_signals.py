"""Trading signals stored in SQL when InfluxDB is not configured (issue 14).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
