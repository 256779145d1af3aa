"""Ops monitoring: operator alerts in ``alerts`` (issue 13).

``user_id`` becomes optional (an SLO breach or a failed task concerns the platform, not a user); ``key``
identifies a breach across evaluations and a partial unique index allows one *open* alert per key, so the
``ops_monitor`` DAG never repeats an open alert; ``subject``, ``since`` and ``resolved_at`` say what it is
about, since when and when it ended.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_OPEN = "resolved_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(sa.Column("key", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_alerts_open_key",
        "alerts",
        ["key"],
        unique=True,
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_alerts_open_key", table_name="alerts")
    # Operator alerts have no user: they cannot survive a NOT NULL user_id.
    op.execute(sa.text("DELETE FROM alerts WHERE user_id IS NULL"))
    with op.batch_alter_table("alerts") as batch_op:
        for name in ("resolved_at", "since", "subject", "key"):
            batch_op.drop_column(name)
        batch_op.alter_column("user_id", existing_type=sa.Uuid(), nullable=False)
