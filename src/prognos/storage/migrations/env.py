"""Alembic environment: runs migrations on the connection ``Database.upgrade()`` hands over.

Nothing is read from an ``alembic.ini`` or the environment (see ``alembic_config``), so a URL and
its password live in one place. Importing this module outside Alembic does nothing.
"""

from __future__ import annotations

from alembic import context

from prognos.storage.models import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "prognos migrations run on a connection: use Database.upgrade() or alembic_config()"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: later revisions rebuild tables in "batch" mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic executes this file with its proxy installed; a plain import (docs, tooling) skips it.
if getattr(context, "_proxy", None) is not None:
    run_migrations()
