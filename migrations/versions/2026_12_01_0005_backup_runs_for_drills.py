"""Backup runs with checksums, versions and restore-drill outcomes (issue 12).

``destination`` becomes ``location``; ``status`` gains ``verified`` and ``drill_failed`` (a drill's outcome
lives on the row it restored); the never-written ``verify_status`` gives way to the drill's time, error, RTO
and RPO; tool and server versions and the figures recorded at backup time are added. Runs unchanged on
SQLite (batch mode rebuilds the table there).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = ("running", "succeeded", "failed")
_NEW_STATUSES = (*_OLD_STATUSES, "verified", "drill_failed")
_VERIFY_STATUSES = ("passed", "failed", "skipped")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def upgrade() -> None:
    with op.batch_alter_table("backup_runs") as batch_op:
        batch_op.alter_column("destination", new_column_name="location", existing_type=sa.String(length=1000))
        batch_op.drop_constraint(op.f("ck_backup_runs_verify_status"), type_="check")
        batch_op.drop_column("verify_status")
        batch_op.alter_column("verified_at", new_column_name="checksum_verified_at")
        batch_op.drop_constraint(op.f("ck_backup_runs_backup_status"), type_="check")
        batch_op.create_check_constraint("backup_status", _in("status", _NEW_STATUSES))
        batch_op.add_column(sa.Column("tool_version", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("server_version", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("figures", _json(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("drilled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("drill_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("rto_seconds", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("rpo_seconds", sa.Double(), nullable=True))
    # The server default only filled existing rows; the model sets the value, like every other JSON column.
    with op.batch_alter_table("backup_runs") as batch_op:
        batch_op.alter_column("figures", existing_type=_json(), server_default=None, existing_nullable=False)


def downgrade() -> None:
    # A drill's outcome has no place in the old vocabulary: verified/drill_failed rows go back to succeeded.
    op.execute(sa.text("UPDATE backup_runs SET status = 'succeeded' WHERE status IN ('verified', 'drill_failed')"))
    with op.batch_alter_table("backup_runs") as batch_op:
        for name in ("rpo_seconds", "rto_seconds", "drill_error", "drilled_at", "figures", "server_version"):
            batch_op.drop_column(name)
        batch_op.drop_column("tool_version")
        batch_op.drop_constraint(op.f("ck_backup_runs_backup_status"), type_="check")
        batch_op.create_check_constraint("backup_status", _in("status", _OLD_STATUSES))
        batch_op.alter_column("checksum_verified_at", new_column_name="verified_at")
        batch_op.add_column(sa.Column("verify_status", sa.String(length=32), nullable=True))
        batch_op.create_check_constraint("verify_status", _in("verify_status", _VERIFY_STATUSES))
        batch_op.alter_column("location", new_column_name="destination", existing_type=sa.String(length=1000))
