"""``prognos report eda|savings``: an HTML look at a fleet, and what a model's alerts save."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import HomeOption, get_state, load_fleet, path_line, source_stem, steps
from prognos.cli.data import EventsOption, Source, SpecOption

app = typer.Typer(
    help="Reports: exploratory data analysis, maintenance savings.", no_args_is_help=True
)

OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write.")]


@app.command()
def eda(
    ctx: typer.Context,
    source: Source,
    output: OutputOption = None,
    spec: SpecOption = None,
    events: EventsOption = None,
    home: HomeOption = None,
) -> None:
    """A self-contained HTML report of a fleet: size and lives, sensors against RUL,
    correlations, regimes, dead and stuck sensors, the health index, per-asset trends.

    Default output: $PROGNOS_HOME/reports/eda/<source-stem>.html.
    """
    from prognos.reports.eda import STEPS, build_eda

    state = get_state(ctx, home)
    started = time.perf_counter()
    data = load_fleet(state, source, spec, events)
    with steps(state.err, len(STEPS)) as step:
        page, facts = build_eda(data, progress=step)
    if output is None:
        output = state.settings.home / "reports" / "eda" / f"{source_stem(source)}.html"
    page.write(output)
    size = output.stat().st_size
    state.out.print(
        f"{facts.n_assets:,} assets, {facts.n_rows:,} readings, {facts.n_regimes} regime(s); "
        f"dead: {', '.join(facts.constant_columns) or 'none'}; "
        f"stuck: {', '.join(facts.stuck_sensors) or 'none'}",
        soft_wrap=True,
    )
    path_line(
        state.out,
        f"wrote {size / 1024:,.0f} KiB in {time.perf_counter() - started:.1f} s ->",
        output,
    )


@app.command()
def savings(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="NAME (its champion, else latest), NAME/VERSION or NAME@ALIAS."
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Also price a scored fleet with known outcomes (whole run-to-failure "
            "trajectories), KIND:PATH.",
        ),
    ] = None,
    output: OutputOption = None,
    lead_time: Annotated[
        int, typer.Option("--lead-time", min=0, help="Cycles an action takes after the alert.")
    ] = 0,
    spec: SpecOption = None,
    events: EventsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Expected maintenance cost of acting on the model's alerts against run-to-failure and the
    best fixed-interval policy, on its cross-validation and on any scored fleet."""
    from prognos.reports.business import savings_for_model
    from prognos.reports.savings_page import (
        POLICY_HEADER,
        SAVINGS_HEADER,
        headline,
        policy_rows,
        savings_page,
        savings_rows,
    )

    state = get_state(ctx, home)
    # MLflow draws a progress bar per artifact download on stderr: noise in a one-line command.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    fleet = load_fleet(state, data, spec, events) if data is not None else None
    with state.err.status(f"Pricing {escape(model)}"):
        result = savings_for_model(state.settings, model, data=fleet, lead_time=lead_time)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        out = state.out
        out.print(escape(headline(result)), soft_wrap=True)
        for evaluation in filter(None, (result.cross_validation, result.scored)):
            title = escape(evaluation.name) + (" (in-sample)" if evaluation.in_sample else "")
            table = Table(title=f"{title}: {evaluation.lives:,} lives")
            for i, column in enumerate(POLICY_HEADER):
                table.add_column(column, justify="left" if i == 0 else "right")
            for row in policy_rows(evaluation):
                table.add_row(*row)
            out.print(table)
            gains = Table(title="savings")
            for i, column in enumerate(SAVINGS_HEADER):
                gains.add_column(column, justify="left" if i == 0 else "right")
            for row in savings_rows(evaluation):
                gains.add_row(*row)
            out.print(gains)
            for note in evaluation.notes:
                out.print(f"[yellow]{escape(note)}[/]", soft_wrap=True)
        out.print("[dim]assumes: " + escape("; ".join(result.assumptions)) + "[/]")
    if output is not None:
        savings_page(result).write(output)
        path_line(state.err if as_json else state.out, "wrote", output)
