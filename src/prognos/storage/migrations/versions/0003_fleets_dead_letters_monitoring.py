"""Readings, predictions and feedback carry their fleet (one database, several fleets); the stream's
dead letters; monitoring runs and their figures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Written by hand, frozen: it must not import the ORM models, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DEFAULT_FLEET = "default"


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _fleet() -> sa.Column[str]:
    return sa.Column("fleet", sa.String(), nullable=False, server_default=DEFAULT_FLEET)


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table to swap the unique constraint.
    with op.batch_alter_table("readings") as batch:
        batch.add_column(_fleet())
        batch.drop_constraint("uq_readings_asset_id_time", type_="unique")
        batch.create_unique_constraint("uq_readings_fleet_asset_id_time",
                                       ["fleet", "asset_id", "time"])  # fmt: skip
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(_fleet())
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(_fleet())

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("received_at", _datetime(), nullable=False),
        _fleet(),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("topic", sa.String(), nullable=True),
        sa.Column("asset_id", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])

    op.create_table(
        "monitoring_runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("started_at", _datetime(), nullable=False),
        sa.Column("finished_at", _datetime(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        _fleet(),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("window_start", _datetime(), nullable=True),
        sa.Column("window_end", _datetime(), nullable=True),
        sa.Column("drift_detected", sa.Boolean(), nullable=False),
        sa.Column("share_drifted", sa.Float(), nullable=False),
        sa.Column("report_path", sa.String(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_runs"),
    )
    op.create_index("ix_monitoring_runs_started_at", "monitoring_runs", ["started_at"])

    op.create_table(
        "monitoring_metrics",
        sa.Column("id", BIG_KEY, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False, server_default=""),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_metrics"),
    )
    op.create_index("ix_monitoring_metrics_run_id_name", "monitoring_metrics", ["run_id", "name"])


def downgrade() -> None:
    op.drop_table("monitoring_metrics")
    op.drop_table("monitoring_runs")
    op.drop_table("dead_letters")
    for table in ("feedback", "predictions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("fleet")
    with op.batch_alter_table("readings") as batch:
        batch.drop_constraint("uq_readings_fleet_asset_id_time", type_="unique")
        batch.create_unique_constraint("uq_readings_asset_id_time", ["asset_id", "time"])
        batch.drop_column("fleet")
