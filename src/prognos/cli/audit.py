"""``prognos audit list``: the audit log (model loads and moves, key changes, retraining steps,
gate decisions, ingests), newest first, as a table or as JSON lines."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import HomeOption, get_state
from prognos.cli.db import open_database

app = typer.Typer(help="The audit log: who did what to what, and when.", no_args_is_help=True)

# Details longer than this are cut in the table (the JSON lines keep them whole).
_DETAILS_CHARS = 120


@app.command("list")
def list_events(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most events shown.")] = 50,
    action: Annotated[
        str | None,
        typer.Option("--action", help="Only actions starting with this, e.g. retrain. or gate."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="Only events about this subject (a model...).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, newest first.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """The newest audit events first (PROGNOS_DATABASE_URL, or SQLite under the home)."""
    from prognos.storage import audit_events

    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        events = audit_events(db, limit, action=action, subject=subject)
    finally:
        db.dispose()
    if as_json:
        for event in events:
            typer.echo(json.dumps(_json(event), separators=(",", ":")))
        return
    if not events:
        state.err.print("no audit events" + (" match" if action or subject else ""))
        return
    table = Table(title=f"Audit log, newest first ({len(events)})", title_justify="left")
    for column in ("at (UTC)", "actor", "action", "subject", "details"):
        table.add_column(column, overflow="fold")
    for event in events:
        details = json.dumps(event["details"], separators=(",", ":"), default=str)
        if len(details) > _DETAILS_CHARS:
            details = details[: _DETAILS_CHARS - 1] + "…"
        table.add_row(
            _when(event["at"]),
            escape(event["actor"]),
            escape(event["action"]),
            escape(event["subject"]),
            escape(details),
        )
    state.out.print(table)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _json(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "at": event["at"].isoformat(),
        "actor": event["actor"],
        "action": event["action"],
        "subject": event["subject"],
        "details": event["details"],
    }
