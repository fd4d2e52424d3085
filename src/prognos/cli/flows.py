"""``prognos ingest`` (batch ingest into the database) and ``prognos flows list|serve`` (the
flows as scheduled Prefect deployments). Only ``flows serve`` imports Prefect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import HomeOption, fmt_int, get_state, path_line

app = typer.Typer(
    help="The flows (ingest, train, monitor, retrain, gate) as Prefect deployments.",
    no_args_is_help=True,
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Registered model monitoring, retraining and the gate follow "
        "\\[default: PROGNOS_MODEL_NAME].",
        show_default=False,
    ),
]


def ingest(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE", help="KIND:PATH, e.g. csv:readings.csv, cmapss:test_FD001.txt."
        ),
    ],
    spec: Annotated[
        Path | None, typer.Option("--spec", help="FleetSpec YAML mapping the source's columns.")
    ] = None,
    events: Annotated[Path | None, typer.Option("--events", help="Event-log CSV.")] = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where quarantined rows go "
            "\\[default: $PROGNOS_HOME/quarantine/<source-stem>.csv]."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Validate a source and store its valid readings in the database; quarantine the rest.

    The database is PROGNOS_DATABASE_URL, or SQLite under the home. Ingesting again stores nothing
    twice. Exit 1 if no valid row remains.
    """
    from prognos.flows.ingest import ingest as run_ingest

    state = get_state(ctx, home)
    with state.err.status(f"Ingesting {escape(source)}"):
        outcome = run_ingest(
            state.settings, source, spec=spec, events=events, quarantine=quarantine
        )
    if as_json:
        typer.echo(json.dumps(outcome.to_json()))
    else:
        out = state.out
        out.print(
            f"{fmt_int(outcome.total_rows)} rows of fleet [bold]{escape(outcome.fleet)}[/]: "
            f"[green]{fmt_int(outcome.stored)} stored[/], {fmt_int(outcome.already_stored)} "
            f"already stored, [{'red' if outcome.quarantined else 'green'}]"
            f"{fmt_int(outcome.quarantined)} quarantined[/]",
            highlight=False,
        )
        for rule, rows in outcome.by_rule.items():
            out.print(f"  {escape(rule)}: {fmt_int(rows)} rows", highlight=False)
        if outcome.quarantine_path is not None:
            path_line(out, "quarantine ->", outcome.quarantine_path)
    if outcome.valid_rows == 0:
        state.err.print("[bold red]no valid rows remain[/]")
        raise typer.Exit(1)


@app.command("list")
def list_flows(
    ctx: typer.Context,
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per flow.")] = False,
    home: HomeOption = None,
) -> None:
    """The flows, their cron schedules (UTC) and parameters, and which `flows serve` registers
    (no server needed)."""
    from prognos.flows.schedules import planned

    state = get_state(ctx, home)
    plans = planned(state.settings, model)
    if as_json:
        for plan in plans:
            typer.echo(json.dumps(plan.to_json()))
        return
    table = Table(title="Flows", title_justify="left")
    for column in ("deployment", "schedule (UTC)", "parameters"):
        table.add_column(column, overflow="fold")
    for plan in plans:
        if plan.missing:
            schedule = f"[yellow]not registered[/]: {escape(plan.missing)}"
        elif plan.cron is None:
            schedule = "on demand"
        else:
            schedule = f"{escape(plan.cron)} ({plan.setting})"
        params = ", ".join(f"{k}={v}" for k, v in plan.parameters.items())
        table.add_row(f"{plan.flow_name}/{plan.deployment_name}", schedule, escape(params))
    state.out.print(table)


@app.command("serve")
def serve_flows(ctx: typer.Context, model: ModelOption = None, home: HomeOption = None) -> None:
    """Register the flows with their schedules with the Prefect server at PREFECT_API_URL and run
    them here until Ctrl-C (start a server with `prefect server start`)."""
    state = get_state(ctx, home)
    if not state.settings.prefect_api_url:
        # Before importing Prefect (seconds): the usual mistake gets its answer at once.
        from prognos.errors import ConfigError
        from prognos.flows.schedules import NO_SERVER

        raise ConfigError(NO_SERVER)
    from prognos.flows.orchestration import serve_flows as run_serve

    try:
        run_serve(state.settings, model)
    except KeyboardInterrupt:
        state.err.print("stopped")
