"""A RUL interval may be open above: ``predictions.rul_upper`` NULL means "more than rul_lower".

A model trained on a capped RUL cannot see past the cap, so an interval reaching it has no upper
end it could honour; it is served and stored without one instead of a number that looks bounded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Written by hand, frozen: it must not import the ORM models, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("rul_upper", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    # Open intervals had no upper end; the largest float keeps them open in a NOT NULL column.
    op.execute("UPDATE predictions SET rul_upper = 1e308 WHERE rul_upper IS NULL")
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("rul_upper", existing_type=sa.Float(), nullable=False)
