"""``prognos data inspect|validate``: a first look at a fleet, and validation with quarantine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import (
    HomeOption,
    fmt_int,
    get_state,
    load_fleet,
    path_line,
    validate_with_quarantine,
)

if TYPE_CHECKING:
    from prognos.data.inspect import InspectReport
    from prognos.data.validation import ValidationReport

app = typer.Typer(help="Look at and validate fleet data.", no_args_is_help=True)

Source = Annotated[
    str,
    typer.Argument(
        metavar="SOURCE",
        help="KIND:PATH, e.g. cmapss:train_FD001.txt, csv:readings.csv, parquet:fleet/, "
        "sim:n_assets=50,seed=1.",
    ),
]
SpecOption = Annotated[
    Path | None, typer.Option("--spec", help="FleetSpec YAML mapping the source's columns.")
]
EventsOption = Annotated[Path | None, typer.Option("--events", help="Event-log CSV.")]


@app.command()
def inspect(
    ctx: typer.Context,
    source: Source,
    spec: SpecOption = None,
    events: EventsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Summarise a fleet: assets, cycles, sensors, dead channels, gaps, regimes, events."""
    from prognos.data.inspect import inspect_fleet

    state = get_state(ctx, home)
    data = load_fleet(state, source, spec, events)
    with state.err.status("Inspecting"):
        report = inspect_fleet(data)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_inspect(state.out, report)


@app.command()
def validate(
    ctx: typer.Context,
    source: Source,
    spec: SpecOption = None,
    events: EventsOption = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where quarantined rows go "
            "\\[default: $PROGNOS_HOME/quarantine/<source-stem>.csv]."
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Validate readings; quarantine bad rows with reasons. Exit 1 if no valid row remains."""
    state = get_state(ctx, home)
    data = load_fleet(state, source, spec, events)
    with state.err.status("Validating"):
        result, written = validate_with_quarantine(state, data, quarantine)
    report = result.report
    print_validation(state.out, report)
    if written is not None:
        path_line(state.out, f"quarantined {fmt_int(report.quarantined_rows)} rows ->", written)
    if report.valid_rows == 0:
        state.out.print("[bold red]no valid rows remain[/]")
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ rendering


def _value(value: float | datetime | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return f"{value:g}"


def print_inspect(console: Console, report: InspectReport) -> None:
    cycles = report.cycles_per_asset
    span = report.time_span
    overview = Table(title=f"Fleet {escape(report.source)}", show_header=False)
    overview.add_column("", style="bold")
    overview.add_column("")
    overview.add_row("shape", report.shape)
    overview.add_row("rows", fmt_int(report.n_rows))
    overview.add_row("assets", fmt_int(report.n_assets))
    overview.add_row(
        "cycles per asset",
        f"min {cycles.min}, median {cycles.median:g}, mean {cycles.mean:.1f}, max {cycles.max}",
    )
    overview.add_row(
        "time span",
        f"{_value(span.start)} .. {_value(span.end)} (duration {_value(span.duration)})",
    )
    overview.add_row("settings", f"{len(report.settings)}: {escape(', '.join(report.settings))}")
    overview.add_row("sensors", f"{len(report.sensors)}: {escape(', '.join(report.sensors))}")
    overview.add_row(
        "constant columns",
        f"{len(report.constant_columns)}: {escape(', '.join(report.constant_columns))}"
        if report.constant_columns
        else "none",
    )
    overview.add_row("regimes", str(report.n_regimes))
    console.print(overview)

    columns = sorted(set(report.missing_values) | set(report.non_numeric_values))
    if columns:
        gaps = Table(title="Missing and non-numeric values")
        gaps.add_column("column")
        gaps.add_column("missing", justify="right")
        gaps.add_column("non-numeric", justify="right")
        for column in columns:
            gaps.add_row(
                escape(column),
                fmt_int(report.missing_values.get(column, 0)),
                fmt_int(report.non_numeric_values.get(column, 0)),
            )
        console.print(gaps)
    else:
        console.print("missing values: none")

    regimes = Table(title=f"Operating regimes ({report.n_regimes})")
    regimes.add_column("#", justify="right")
    for name in report.settings:
        regimes.add_column(escape(name), justify="right")
    regimes.add_column("rows", justify="right")
    regimes.add_column("share", justify="right")
    for i, regime in enumerate(report.regimes, start=1):
        centre = [f"{regime.center[n]:.4g}" if n in regime.center else "-" for n in report.settings]
        share = regime.rows / report.n_rows if report.n_rows else 0.0
        regimes.add_row(str(i), *centre, fmt_int(regime.rows), f"{share:.1%}")
    console.print(regimes)

    if report.events is not None:
        events = Table(title="Events")
        events.add_column("event")
        events.add_column("count", justify="right")
        for name, count in report.events.items():
            events.add_row(escape(name), fmt_int(count))
        console.print(events)


def print_validation(console: Console, report: ValidationReport) -> None:
    console.print(
        f"{fmt_int(report.total_rows)} rows: [green]{fmt_int(report.valid_rows)} valid[/], "
        f"[{'red' if report.quarantined_rows else 'green'}]"
        f"{fmt_int(report.quarantined_rows)} quarantined[/]"
    )
    if report.by_rule:
        table = Table(title="Quarantined rows by rule")
        table.add_column("rule")
        table.add_column("rows", justify="right")
        table.add_column("example")
        for count in report.by_rule:
            table.add_row(escape(count.rule), fmt_int(count.rows), escape(count.example))
        console.print(table)
    if report.warnings:
        console.print(f"[yellow]{len(report.warnings)} warning(s):[/]")
        for warning in report.warnings:
            console.print(f"  - {escape(warning)}")
