"""The process that runs a backup attempt (``backup_runs.process``: host, pid and the process's start time),
so a later run can tell a ``running`` row whose process ended without finishing (killed, the machine lost)
from one still running, and settle it as ``failed`` (``marketkeeper.backups.abandoned``). Nullable: rows
written before this revision have none. Runs unchanged on SQLite (batch mode).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    with op.batch_alter_table("backup_runs") as batch_op:
        batch_op.add_column(sa.Column("process", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup_runs") as batch_op:
        batch_op.drop_column("process")
