"""``prognos keys create | list | revoke``: API keys for the prediction service.

A key is printed once, by ``create``, on stdout alone (so ``KEY=$(prognos keys create ...)``
works); only its SHA-256 hash is stored.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import HomeOption, get_state
from prognos.cli.db import open_database

app = typer.Typer(help="API keys for the prediction service.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Unique name of the key's holder.")],
    scopes: Annotated[
        str,
        typer.Option("--scopes", help="Comma-separated scopes: read, predict, ingest, admin."),
    ],
    rate_limit: Annotated[
        int | None,
        typer.Option(
            "--rate-limit",
            help="Requests per minute \\[default: the service's default].",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Create a key and print it once: it is not stored and cannot be shown again."""
    from prognos.storage import create_api_key

    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        key, info = create_api_key(db, name, scopes.split(","), rate_limit)
    finally:
        db.dispose()
    limit = "service default" if info.rate_limit_per_minute is None else info.rate_limit_per_minute
    state.err.print(
        f"Created API key [bold]{escape(info.name)}[/] "
        f"(scopes: {', '.join(sorted(info.scopes))}; rate limit per minute: {limit}).",
        soft_wrap=True,
    )
    state.err.print(
        "[yellow]Save this key now: it is shown only once; only its hash is stored.[/]",
        soft_wrap=True,
    )
    typer.echo(key)


@app.command("list")
def list_keys(ctx: typer.Context, home: HomeOption = None) -> None:
    """List keys (never the keys themselves): name, scopes, rate limit, created, revoked."""
    from prognos.storage import list_api_keys

    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        keys = list_api_keys(db)
    finally:
        db.dispose()
    if not keys:
        state.err.print("No API keys; create one with `prognos keys create`.")
        return
    table = Table(title="API keys")
    for column in ("name", "scopes", "rate limit/min", "created", "status"):
        table.add_column(column, no_wrap=column in {"created", "status"})
    for info in keys:
        table.add_row(
            escape(info.name),
            ",".join(sorted(info.scopes)),
            "default" if info.rate_limit_per_minute is None else str(info.rate_limit_per_minute),
            f"{info.created_at:%Y-%m-%d %H:%M:%S}Z",
            "active"
            if info.revoked_at is None
            else f"[red]revoked {info.revoked_at:%Y-%m-%d %H:%M:%S}Z[/]",
        )
    state.out.print(table)


@app.command()
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the key to revoke.")],
    home: HomeOption = None,
) -> None:
    """Revoke a key: running services refuse it within 2 seconds (each worker checks for
    revocations every second; `DELETE /keys/NAME` on a service is immediate on that worker)."""
    from prognos.serving.security import REVOCATION_BOUND_SECONDS
    from prognos.storage import revoke_api_key

    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        info = revoke_api_key(db, name)
    finally:
        db.dispose()
    when = f"{info.revoked_at:%Y-%m-%d %H:%M:%S}Z" if info.revoked_at else "now"
    state.out.print(
        f"Revoked API key [bold]{escape(info.name)}[/] ({when}); running services refuse it "
        f"within {REVOCATION_BOUND_SECONDS:g} s.",
        soft_wrap=True,
    )
