"""``prognos feedback import EVENTS.csv``: an event log of failures and maintenance recorded as
feedback, the labels retraining learns from (:mod:`prognos.data.event_log`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from prognos.cli._common import HomeOption, get_state
from prognos.cli.db import open_database
from prognos.errors import ConfigError, LabelError

app = typer.Typer(help="Operator feedback: failures and maintenance.", no_args_is_help=True)

SUBMITTED_BY = "prognos feedback import"


@app.command("import")
def import_events(
    ctx: typer.Context,
    events: Annotated[
        Path,
        typer.Argument(
            help="CSV with asset_id,time,event[,notes][,component]; event is failure, repair, "
            "replacement or inspection; time a whole cycle or an ISO 8601 timestamp."
        ),
    ],
    fleet: Annotated[
        str | None,
        typer.Option(
            "--fleet",
            help="The fleet the events belong to (as its readings are stored) "
            "\\[default: PROGNOS_FLEET].",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Record the events as feedback; an event already recorded is skipped (idempotent)."""
    from prognos.data.event_log import feedback_rows, read_event_log
    from prognos.ingestion.readings import is_timestamp_time
    from prognos.storage import insert_feedback
    from prognos.storage.training import newest_reading_time

    state = get_state(ctx, home)
    fleet = fleet or state.settings.fleet
    if not fleet:
        raise ConfigError("name the fleet the events belong to: --fleet or PROGNOS_FLEET")
    log = read_event_log(events)
    stamped = bool(len(log)) and str(log["time"].dtype).startswith("datetime64")
    db = open_database(state.settings)
    try:
        newest = newest_reading_time(db, fleet)
        if newest is not None and len(log) and is_timestamp_time(newest) != stamped:
            kinds = {True: "timestamps", False: "cycles"}
            raise LabelError(
                f"{events}: its times are {kinds[stamped]}, but fleet {fleet!r}'s stored "
                f"readings count {kinds[is_timestamp_time(newest)]}"
            )
        new = insert_feedback(db, feedback_rows(log, fleet=fleet, submitted_by=SUBMITTED_BY))
    finally:
        db.dispose()
    tally = Counter(log["event"])
    state.out.print(
        f"fleet [bold]{escape(fleet)}[/]: {new} new event(s) recorded, {len(log) - new} already "
        f"there ({', '.join(f'{k} {v}' for k, v in sorted(tally.items())) or 'none in the file'})",
        soft_wrap=True,
        highlight=False,
    )
