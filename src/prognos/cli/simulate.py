"""``prognos simulate``: a synthetic fleet with known ground truth, written as a data source."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import HomeOption, fmt_int, get_state, path_line

if TYPE_CHECKING:
    from prognos.data.dataset import FleetData

_RESETS = ("repair", "replacement", "maintenance")


class Mode(StrEnum):
    run_to_failure = "run_to_failure"
    telemetry = "telemetry"


def simulate(
    ctx: typer.Context,
    assets: Annotated[
        int | None, typer.Option("--assets", "-n", help="Number of assets \\[default: 100].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the assets \\[default: 0].")] = None,
    mode: Annotated[
        Mode | None, typer.Option(help="Data shape \\[default: run_to_failure].")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="SimulatorConfig YAML; the options above override it."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Target KIND:PATH (csv:, parquet:, cmapss:) "
            "\\[default: csv:$PROGNOS_HOME/data/simulated.csv].",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Simulate a fleet (run-to-failure or telemetry with an event log) and write it."""
    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.data.sinks import write_source
    from prognos.data.sources import parse_source

    state = get_state(ctx, home)
    default_output = output is None
    if output is None:
        output = f"csv:{state.settings.data_dir / 'simulated.csv'}"
    parse_source(output)  # a bad target fails before the work
    base = SimulatorConfig.from_yaml(config) if config is not None else SimulatorConfig()
    overrides = {
        k: v
        for k, v in {
            "n_assets": assets,
            "seed": seed,
            "mode": mode.value if mode is not None else None,
        }.items()
        if v is not None
    }
    sim_config = SimulatorConfig.model_validate({**base.model_dump(), **overrides})
    with state.err.status(f"Simulating {sim_config.n_assets:,} assets"):
        data = simulate_fleet(sim_config)
    if default_output:
        state.settings.ensure_home()
    with state.err.status(f"Writing {escape(output)}"):
        written = write_source(data, output)

    state.out.print(simulation_table(data, sim_config.mode))
    for path in written:
        path_line(state.out, "wrote", path)


def simulation_table(data: FleetData, mode: str) -> Table:
    """Assets, rows, sensors, regimes and (for telemetry) failures vs censored lives."""
    from prognos.fleet import ASSET, TIME

    readings = data.readings
    per_asset = readings.groupby(ASSET, sort=False).size()
    regimes = data.meta.get("regimes")
    fault = data.meta.get("fault_sensors")
    table = Table(title=f"Simulated fleet {escape(data.spec.name)}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("mode", mode)
    table.add_row("assets", fmt_int(data.n_assets))
    table.add_row("rows", fmt_int(len(readings)))
    table.add_row(
        "cycles per asset",
        f"min {per_asset.min()}, median {per_asset.median():g}, max {per_asset.max()}",
    )
    sensors = f"{len(data.spec.sensors)}"
    if isinstance(fault, list):
        sensors += f" ({len(fault)} degrade: {', '.join(map(str, fault))})"
    table.add_row("sensors", sensors)
    table.add_row("settings", str(len(data.spec.settings)))
    table.add_row("regimes", str(len(regimes)) if isinstance(regimes, list) else "?")
    if data.events is None:
        table.add_row("failures", f"{fmt_int(data.n_assets)} (every trajectory ends in failure)")
        table.add_row("censored", "0")
        return table
    events = data.events
    counts = events["event"].value_counts()
    failures = int(counts.get("failure", 0))
    # Lives per asset: one, plus one per reset before the asset's last reading.
    last = readings.groupby(ASSET)[TIME].max()
    resets = events[events["event"].isin(_RESETS)]
    before_end = resets[TIME].to_numpy() < last.reindex(resets[ASSET]).to_numpy()
    lives = data.n_assets + int(before_end.sum())
    table.add_row("failures", fmt_int(failures))
    table.add_row("censored lives", f"{fmt_int(lives - failures)} of {fmt_int(lives)}")
    table.add_row(
        "events", ", ".join(f"{escape(str(k))} {fmt_int(int(v))}" for k, v in counts.items())
    )
    return table
