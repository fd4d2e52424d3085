"""Feedback keeps the failure cycle an operator reports (until now only a failure time).

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Written by hand, frozen: it must not import the ORM models, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite adds the column in place, and would rebuild the table for a drop.
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("failure_cycle", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("failure_cycle")
