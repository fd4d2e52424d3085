"""Shadow predictions (a challenger's, logged but never returned) and alert states.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Written by hand, frozen: it must not import the ORM models, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False, server_default=""),
        sa.Column("fleet", sa.String(), nullable=False, server_default="default"),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("started_at", _datetime(), nullable=False),
        sa.Column("fired_at", _datetime(), nullable=True),
        sa.Column("last_notified_at", _datetime(), nullable=True),
        sa.Column("resolved_at", _datetime(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_rule_subject_state", "alerts", ["rule", "subject", "state"])


def downgrade() -> None:
    op.drop_index("ix_alerts_rule_subject_state", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("shadow")
