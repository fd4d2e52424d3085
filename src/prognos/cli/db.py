"""``prognos db upgrade``: create or migrate the prediction service's database schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from prognos.cli._common import HomeOption, get_state

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.storage import Database

app = typer.Typer(help="The prediction service's database.", no_args_is_help=True)


def open_database(settings: Settings) -> Database:
    """:func:`prognos.storage.database.open_database`, imported when called so that
    ``prognos --help`` does not load SQLAlchemy."""
    from prognos.storage.database import open_database as open_migrated

    return open_migrated(settings)


@app.command()
def upgrade(ctx: typer.Context, home: HomeOption = None) -> None:
    """Migrate the schema to the newest revision (PROGNOS_DATABASE_URL, or SQLite under home)."""
    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        revision = db.revision()
    finally:
        db.dispose()
    state.out.print(
        f"database [cyan]{db.display_url}[/] at revision [bold]{revision}[/]",
        soft_wrap=True,
        markup=True,
        highlight=False,
    )
