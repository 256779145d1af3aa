"""One balance snapshot per account, currency and instant; trade statistics and risk ratios on performance rows.

``balance_snapshots`` gets a unique constraint on (user_id, exchange, currency, timestamp), replacing the plain
index on the same columns, so a re-run snapshot replaces its rows instead of adding more. ``performance_metrics``
gets nullable columns for the trade statistics, Sortino and Calmar ratios and the day's closing equity (NULL on
rows rolled up before this revision). Runs unchanged on SQLite (batch mode rebuilds the table there).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:25:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SNAPSHOT_KEY = ["user_id", "exchange", "currency", "timestamp"]
_UNIQUE_NAME = "uq_balance_snapshots_user_id_exchange_currency_timestamp"
_OLD_INDEX = "ix_balance_snapshots_user_exchange_currency_ts"

_MONEY_COLUMNS = (
    "gross_profit",
    "gross_loss",
    "total_fees",
    "avg_win",
    "avg_loss",
    "largest_win",
    "largest_loss",
    "expectancy",
    "equity",
)
_RATIO_COLUMNS = ("profit_factor", "sortino_ratio", "calmar_ratio")


def _money() -> sa.types.TypeEngine[object]:
    return sa.Numeric(precision=38, scale=18).with_variant(sa.String(length=40), "sqlite")


def upgrade() -> None:
    duplicates = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM balance_snapshots"
                " GROUP BY user_id, exchange, currency, timestamp HAVING count(*) > 1) AS d"
            )
        )
        .scalar_one()
    )
    if duplicates:
        # Which copy is right is the operator's call, not a migration's: refuse rather than delete history.
        raise RuntimeError(
            f"balance_snapshots holds {duplicates} (user_id, exchange, currency, timestamp) keys more than once; "
            "keep one row per key, then run the upgrade again"
        )
    with op.batch_alter_table("balance_snapshots") as batch_op:
        batch_op.drop_index(_OLD_INDEX)
        batch_op.create_unique_constraint(_UNIQUE_NAME, _SNAPSHOT_KEY)

    with op.batch_alter_table("performance_metrics") as batch_op:
        for name in ("gross_profit", "gross_loss", "total_fees", "avg_win", "avg_loss", "largest_win", "largest_loss"):
            batch_op.add_column(sa.Column(name, _money(), nullable=True))
        batch_op.add_column(sa.Column("profit_factor", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("expectancy", _money(), nullable=True))
        batch_op.add_column(sa.Column("sortino_ratio", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("calmar_ratio", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("equity", _money(), nullable=True))
        batch_op.add_column(sa.Column("equity_currency", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("performance_metrics") as batch_op:
        for name in (*_MONEY_COLUMNS, *_RATIO_COLUMNS, "equity_currency"):
            batch_op.drop_column(name)

    with op.batch_alter_table("balance_snapshots") as batch_op:
        batch_op.drop_constraint(_UNIQUE_NAME, type_="unique")
        batch_op.create_index(_OLD_INDEX, _SNAPSHOT_KEY, unique=False)
