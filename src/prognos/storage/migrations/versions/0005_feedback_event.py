"""Feedback says what happened: a failure, a repair, a replacement or an inspection.

A repair or replacement starts a new life of the asset, so retraining labels need it; until now a
row only said whether a failure occurred. Existing rows get the event they meant: "failure" when a
failure occurred, else "inspection" (an inspected, no-failure report).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Written by hand, frozen: it must not import the ORM models, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("event", sa.String(), nullable=True))
    op.execute(
        "UPDATE feedback SET event = CASE WHEN failure_occurred THEN 'failure' "
        "ELSE 'inspection' END WHERE event IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("event")
