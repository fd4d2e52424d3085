"""``prognos features build``: validate, fit the feature pipeline, write the feature matrix."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import (
    HomeOption,
    fmt_int,
    get_state,
    load_fleet,
    parse_table_target,
    path_line,
    source_stem,
    steps,
    validate_with_quarantine,
    write_table,
)
from prognos.cli.data import EventsOption, Source, SpecOption
from prognos.cli.spark import Engine, EngineOption
from prognos.errors import DataSourceError, DataValidationError, LabelError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from prognos.data.dataset import FleetData
    from prognos.features import FeaturePipeline, FeatureSpec

app = typer.Typer(help="Build features from fleet data.", no_args_is_help=True)


@dataclass
class FeatureBuild:
    """A fitted pipeline and its matrix: ``asset_id``, ``time``, features, then labels."""

    pipeline: FeaturePipeline
    matrix: pd.DataFrame
    features: list[str]
    labels: list[str]
    label_note: str | None


def build_feature_matrix(
    data: FleetData,
    valid: pd.DataFrame,
    feature_spec: FeatureSpec | None,
    step: Callable[[str], None] = lambda _: None,
) -> FeatureBuild:
    """Fit on the valid rows, transform them and attach labels when the data has them."""
    import pandas as pd

    from prognos.data.labels import labels_for
    from prognos.features import FeaturePipeline
    from prognos.fleet import ASSET, TIME

    if valid.empty:
        raise DataValidationError(f"{data.source}: no valid rows to build features from")
    step("Fitting the feature pipeline")
    pipeline = FeaturePipeline(data.spec, feature_spec).fit(valid)
    step("Building features")
    features = pipeline.transform(valid)
    step("Deriving labels")
    note = None
    try:
        labels = labels_for(replace(data, readings=valid))
    except LabelError as exc:
        labels, note = pd.DataFrame(index=valid.index), f"labels skipped: {exc}"
    clash = sorted(set(labels.columns) & {ASSET, TIME, *features.columns})
    if clash:
        raise SchemaError(f"label column(s) {clash} clash with feature names")
    matrix = pd.concat([valid[[ASSET, TIME]], features, labels], axis=1).reset_index(drop=True)
    return FeatureBuild(
        pipeline=pipeline,
        matrix=matrix,
        features=list(features.columns),
        labels=[str(c) for c in labels.columns],
        label_note=note,
    )


@app.command()
def build(
    ctx: typer.Context,
    source: Source,
    spec: SpecOption = None,
    events: EventsOption = None,
    features: Annotated[
        Path | None,
        typer.Option("--features", help="FeatureSpec YAML \\[default: the built-in feature set]."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="parquet:FILE or csv:FILE (--engine spark: parquet:DIR) "
            "\\[default: parquet:$PROGNOS_HOME/data/<source-stem>.features.parquet].",
        ),
    ] = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where quarantined rows go "
            "\\[default: $PROGNOS_HOME/quarantine/<source-stem>.csv; "
            "--engine spark: a Parquet directory beside the output, <output>.quarantine]."
        ),
    ] = None,
    engine: EngineOption = Engine.pandas,
    home: HomeOption = None,
) -> None:
    """Validate, fit the feature pipeline on the valid rows and write the feature matrix."""
    from prognos.features import FeatureSpec

    state = get_state(ctx, home)
    if engine is Engine.spark:
        from prognos.cli.spark import spark_features

        if events is not None:
            raise DataSourceError(
                "--engine spark takes no --events (on Spark: prognos.spark.jobs.training_set)"
            )
        spec_yaml = FeatureSpec.from_yaml(features) if features is not None else None
        spark_features(state, source, spec, spec_yaml, output, quarantine)
        return
    started = time.perf_counter()
    default_output = output is None
    if output is None:
        output = f"parquet:{state.settings.data_dir / f'{source_stem(source)}.features.parquet'}"
    kind, target = parse_table_target(output, "the feature matrix")
    feature_spec = FeatureSpec.from_yaml(features) if features is not None else None
    data = load_fleet(state, source, spec, events)
    with steps(state.err, 5) as step:
        step("Validating")
        result, quarantined = validate_with_quarantine(state, data, quarantine)
        built = build_feature_matrix(data, result.valid, feature_spec, step)
        step(f"Writing {target}")
        if default_output:
            state.settings.ensure_home()
        write_table(built.matrix, target, kind)
    seconds = time.perf_counter() - started

    out, report, pipeline = state.out, result.report, built.pipeline
    line = (
        f"validated {fmt_int(report.total_rows)} rows: {fmt_int(report.valid_rows)} valid, "
        f"{fmt_int(report.quarantined_rows)} quarantined"
    )
    if quarantined is not None:
        path_line(out, line + " ->", quarantined)
    else:
        out.print(line)
    table = Table(title=f"Features of {escape(data.source)}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("matrix", f"{fmt_int(len(built.matrix))} rows x {len(built.features)} features")
    table.add_row("regimes", str(pipeline.regimes_.n_regimes))
    table.add_row(
        "sensors kept", f"{len(pipeline.sensors_)}: {escape(', '.join(pipeline.sensors_))}"
    )
    dropped = pipeline.dropped_sensors_
    table.add_row(
        "sensors dropped",
        f"{len(dropped)}: {escape(', '.join(dropped))}" if dropped else "none",
    )
    table.add_row("labels", escape(", ".join(built.labels)) if built.labels else "none")
    table.add_row("time", f"{seconds:.2f} s")
    out.print(table)
    if built.label_note:
        out.print(f"[yellow]note:[/] {escape(built.label_note)}", soft_wrap=True)
    path_line(out, "wrote", target)
