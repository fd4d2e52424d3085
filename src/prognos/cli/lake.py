"""``prognos lake export|compact|ls`` (the database's readings in the Parquet lake) and ``prognos
data snapshot materialise|show`` (a training run's rows rebuilt from the lake)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import HomeOption, fmt_int, get_state, path_line

if TYPE_CHECKING:
    from prognos.cli._common import CliState
    from prognos.data.snapshot import SnapshotManifest
    from prognos.storage.lake_compact import CompactResult
    from prognos.storage.lake_export import ExportResult

app = typer.Typer(
    help="The Parquet lake (Hive partitions fleet=/date=) the stored readings are exported to.",
    no_args_is_help=True,
)
snapshot_app = typer.Typer(
    help="Training snapshots: the exact rows a run read, rebuilt from the lake.",
    no_args_is_help=True,
)

LakeOption = Annotated[
    str | None,
    typer.Option(
        "--lake",
        help="The lake's root: a path or fsspec URL \\[default: PROGNOS_LAKE_URL, else "
        "$PROGNOS_HOME/lake].",
        show_default=False,
    ),
]

# One definition each for the options the commands share, so their names and help cannot drift.
FleetsOption = Annotated[
    list[str] | None,
    typer.Option("--fleet", help="This fleet only (repeatable) \\[default: every one]."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON line per fleet.")]


def _state(ctx: typer.Context, home: Path | None, lake: str | None) -> CliState:
    state = get_state(ctx, home)
    if lake is not None:
        state.settings = state.settings.model_copy(update={"lake_url": lake})
    return state


@app.command("export")
def export(
    ctx: typer.Context,
    fleet: FleetsOption = None,
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="FleetSpec YAML kept beside the fleet (needs one --fleet)."),
    ] = None,
    run_to_failure: Annotated[
        bool | None,
        typer.Option(
            "--run-to-failure/--telemetry",
            help="Record the fleet's data shape beside it (needs one --fleet): whether each "
            "asset's last reading is its failure.",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(
            "--every", help="Export again every SECONDS until Ctrl-C.", show_default=False
        ),
    ] = None,
    times: Annotated[
        int | None, typer.Option("--times", help="With --every: stop after N exports.", hidden=True)
    ] = None,
    as_json: JsonOption = False,
    lake: LakeOption = None,
    home: HomeOption = None,
) -> None:
    """Append the readings stored since the last export to the lake, per fleet; running it
    again (or after a crash) stores nothing twice."""
    from prognos.errors import ConfigError
    from prognos.fleet import FleetSpec
    from prognos.flows.lake import describe_fleet, export_every, export_once

    state = _state(ctx, home, lake)
    settings = state.settings
    if spec is not None or run_to_failure is not None:
        if not fleet or len(fleet) != 1:
            raise ConfigError("--spec and --run-to-failure/--telemetry describe one --fleet")
        fleet_spec = FleetSpec.from_yaml(spec) if spec is not None else None
        describe_fleet(settings, fleet[0], fleet_spec, run_to_failure)

    def show(results: list[ExportResult]) -> None:
        for result in results:
            if as_json:
                typer.echo(json.dumps(result.to_json()))
            elif result.rows or every is None:
                state.out.print(
                    f"fleet [bold]{escape(result.fleet)}[/]: {fmt_int(result.rows)} readings "
                    f"exported in {len(result.files)} files (watermark {result.watermark})",
                    highlight=False,
                )

    if every is None:
        show(export_once(settings, fleet or None))
        if not as_json:
            path_line(state.out, "lake", settings.lake)
        return
    stop = threading.Event()
    state.err.print(f"exporting to {escape(settings.lake)} every {every:g} s; Ctrl-C stops")
    try:
        export_every(settings, every, fleets=fleet or None, stop=stop, times=times, report=show)
    except KeyboardInterrupt:
        stop.set()
        state.err.print("stopped")


@app.command("compact")
def compact(
    ctx: typer.Context,
    fleet: FleetsOption = None,
    min_files: Annotated[
        int,
        typer.Option(
            "--min-files", min=2, help="Merge a partition's small files once it has this many."
        ),
    ] = 10,
    as_json: JsonOption = False,
    lake: LakeOption = None,
    home: HomeOption = None,
) -> None:
    """Merge each date partition's small files (under 64 MiB) into one, one row per (asset,
    time) as readers keep them. Crash-safe: the merged file is written before the old ones are
    deleted; snapshots of earlier runs still materialise. Run one at a time."""
    from prognos.flows.lake import compact_once

    state = _state(ctx, home, lake)
    results: list[CompactResult] = compact_once(state.settings, fleet or None, min_files=min_files)
    for result in results:
        if as_json:
            typer.echo(json.dumps(result.to_json()))
            continue
        state.out.print(
            f"fleet [bold]{escape(result.fleet)}[/]: {result.partitions} partitions compacted, "
            f"{fmt_int(result.files_before)} -> {fmt_int(result.files_after)} files",
            highlight=False,
        )
        for reason in result.skipped:
            state.err.print(f"  left alone: {escape(reason)}", highlight=False)


@app.command("ls")
def list_lake(ctx: typer.Context, lake: LakeOption = None, home: HomeOption = None) -> None:
    """The lake's fleets: files, dates, rows exported and the watermark."""
    from prognos.storage.lake import open_lake

    state = _state(ctx, home, lake)
    opened = open_lake(state.settings.lake)
    table = Table(title=f"Lake {opened.url}", title_justify="left")
    for column in ("fleet", "files", "dates", "rows exported", "watermark", "spec"):
        table.add_column(column)
    for name in opened.fleets():
        files = opened.files(name)
        dates = sorted({f.split("/")[1].removeprefix("date=") for f in files})
        export_state = opened.export_state(name)
        table.add_row(
            escape(name),
            fmt_int(len(files)),
            f"{dates[0]} .. {dates[-1]}" if dates else "-",
            fmt_int(int(export_state.get("rows", 0))),
            str(export_state.get("reading_id", 0)),
            "yes" if opened.spec(name) is not None else "inferred",
        )
    state.out.print(table)


DigestArgument = Annotated[
    str, typer.Argument(metavar="HASH", help="The snapshot's hash (>= 8 hex).")
]
ManifestOption = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="The run's snapshot.json \\[default: found in MLflow by the hash].",
        show_default=False,
    ),
]


def _manifest(state: CliState, digest: str, manifest: Path | None) -> SnapshotManifest:
    from prognos.data.snapshot import read_manifest
    from prognos.errors import LakeError

    if manifest is None:
        from prognos.registry.tracking import connect
        from prognos.training.snapshot import find_manifest

        return find_manifest(connect(state.settings), digest)
    try:
        found = read_manifest(manifest.read_text(), str(manifest))
    except OSError as exc:
        raise LakeError(f"cannot read {manifest}: {exc}") from exc
    if not found.hash.startswith(digest.strip().lower()):
        raise LakeError(f"{manifest} is snapshot {found.hash}, not {digest}")
    return found


@snapshot_app.command("materialise")
def materialise(
    ctx: typer.Context,
    digest: DigestArgument,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Where the rows go: parquet:PATH or csv:PATH.")
    ],
    lake: Annotated[
        str | None,
        typer.Option(
            "--lake",
            help="The lake (or a copy of it) \\[default: the lake the run read].",
            show_default=False,
        ),
    ] = None,
    manifest: ManifestOption = None,
    home: HomeOption = None,
) -> None:
    """Rebuild a training run's rows from the lake files its manifest lists, check them against
    the hash, and write them (with the spec beside them) as a source `prognos train` reads."""
    from prognos.data.sinks import write_source
    from prognos.data.snapshot import materialise as rebuild
    from prognos.data.sources import parse_source
    from prognos.storage.lake import open_lake

    state = get_state(ctx, home)
    parse_source(output)  # a bad target fails before the work
    with state.err.status(f"Materialising snapshot {escape(digest)}"):
        found = _manifest(state, digest, manifest)
        data = rebuild(open_lake(lake or found.lake), found)
        written = write_source(data, output)
    state.out.print(
        f"snapshot [bold]{found.hash}[/]: {fmt_int(len(data.readings))} rows of "
        f"{fmt_int(found.assets)} assets from {len(found.files)} files, hash verified",
        highlight=False,
    )
    for path in written:
        path_line(state.out, "wrote", path)


@snapshot_app.command("show")
def show_snapshot(
    ctx: typer.Context,
    digest: DigestArgument,
    manifest: ManifestOption = None,
    home: HomeOption = None,
) -> None:
    """Print a snapshot's manifest (lake, fleet, date filter, files, spec) as JSON."""
    typer.echo(_manifest(get_state(ctx, home), digest, manifest).to_json())
