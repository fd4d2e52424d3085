"""``prognos monitor``: drift of a batch of readings against a model's reference profile (``drift``)
and live monitoring runs over the database (``run``, in :mod:`prognos.cli.monitor_live`).

One command per function; a new one is one more ``app.command`` line at the bottom.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli import monitor_live
from prognos.cli._common import (
    HomeOption,
    fmt_int,
    get_state,
    path_line,
    source_stem,
    valid_readings,
)
from prognos.cli.data import EventsOption, SpecOption
from prognos.errors import DataSourceError

if TYPE_CHECKING:
    from prognos.cli._common import CliState
    from prognos.models.bundle import ModelBundle
    from prognos.monitoring.drift import DriftResult

app = typer.Typer(help="Drift and live monitoring of a model's fleet.", no_args_is_help=True)


def drift(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model URI: models:/NAME@champion, models:/NAME/3, models:/NAME/latest, "
            "runs:/RUN/model.",
        ),
    ],
    data: Annotated[str, typer.Option("--data", help="Readings to judge, KIND:PATH.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for drift.json and report.html "
            "\\[default: HOME/reports/drift/<data stem>].",
            show_default=False,
        ),
    ] = None,
    max_predictions: Annotated[
        int,
        typer.Option(
            "--max-predictions",
            min=0,
            help="Readings the model predicts for prediction drift and key features "
            "(a random sample; 0: none, and the model is not even loaded).",
        ),
    ] = 10_000,
    spec: SpecOption = None,
    events: EventsOption = None,
    home: HomeOption = None,
) -> None:
    """Compare readings with the model's reference profile: drift that is not aging."""
    from prognos.monitoring.batch import BatchDrift, drift_with_model
    from prognos.monitoring.drift import detect_drift
    from prognos.monitoring.report import render_report

    state = get_state(ctx, home)
    # MLflow draws a progress bar per artifact download on stderr: noise in a one-line command.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    start = time.perf_counter()
    readings = valid_readings(state, data, spec, events, "compare")
    loaded = time.perf_counter()
    # The model itself (torch, XGBoost: seconds to import) only when it is to predict.
    bundle, run_id = _load_model(state, model) if max_predictions else (None, _run_of(state, model))
    with state.err.status("Loading the reference profile"):
        profile = _load_profile(state, run_id, model)
    ready = time.perf_counter()
    with state.err.status(f"Comparing {fmt_int(len(readings))} readings"):
        if bundle is None:
            run = BatchDrift(result=detect_drift(profile, readings), predictions=readings.iloc[:0])
            run.seconds = {"predict": 0.0, "drift": time.perf_counter() - ready}
        else:
            run = drift_with_model(bundle, profile, readings, max_predictions=max_predictions)
    seconds = {
        "load_data": loaded - start,
        "load_model": ready - loaded,
        **run.seconds,
        "total": time.perf_counter() - start,
    }
    folder = output or state.settings.reports_dir / "drift" / source_stem(data)
    details: dict[str, Any] = {
        "model": model,
        "run_id": run_id,
        "data": data,
        "predicted_readings": len(run.predictions),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    document = {**run.result.to_json(), **details}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "drift.json").write_text(json.dumps(document, indent=2, default=_plain))
        title = f"Drift of {data} against {model}"
        (folder / "report.html").write_text(
            render_report(run.result, profile, title=title, details=details)
        )
    except OSError as exc:
        raise DataSourceError(f"cannot write the drift report to {folder}: {exc}") from exc
    _print_summary(state, run.result, seconds["total"])
    path_line(state.out, "wrote", folder / "drift.json")
    path_line(state.out, "wrote", folder / "report.html")


def _plain(value: Any) -> Any:
    """JSON for numpy scalars (asset ids)."""
    return value.item() if hasattr(value, "item") else str(value)


def _load_model(state: CliState, uri: str) -> tuple[ModelBundle, str]:
    """The bundle behind any MLflow model URI and the run that trained it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from prognos.registry.tracking import connect

    connect(state.settings)
    try:
        with state.err.status(f"Loading {escape(uri)}"):
            model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise DataSourceError(f"cannot load model {uri}: {exc}") from exc
    bundle = model.unwrap_python_model().bundle
    return bundle, str(model.metadata.run_id)


def _run_of(state: CliState, uri: str) -> str:
    """The training run behind a model URI, from the registry alone (no model loaded)."""
    from mlflow.exceptions import MlflowException

    from prognos.registry.tracking import connect

    client = connect(state.settings)
    kind, _, rest = uri.partition(":/")
    try:
        if kind == "runs":
            return rest.strip("/").split("/")[0]
        if kind == "models" and "@" in rest:
            name, alias = rest.strip("/").split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).run_id)
        if kind == "models" and "/" in rest.strip("/"):
            name, version = rest.strip("/").split("/", 1)
            if version == "latest":
                found = client.search_model_versions(f"name = '{name}'")
                version = str(max(int(v.version) for v in found)) if found else version
            return str(client.get_model_version(name, version).run_id)
    except (MlflowException, ValueError) as exc:
        raise DataSourceError(f"cannot resolve model {uri}: {exc}") from exc
    return _load_model(state, uri)[1]


def _load_profile(state: CliState, run_id: str, uri: str) -> Any:
    from prognos.monitoring.profile import load_run_profile

    return load_run_profile(state.settings, run_id, what=uri)


def _print_summary(state: CliState, result: DriftResult, seconds: float) -> None:
    out = state.out
    verdict = "[bold red]drift detected[/]" if result.drift_detected else "[green]no drift[/]"
    condition = result.operating_condition
    out.print(
        f"{verdict}: share of columns drifted {result.share_drifted:.2f}; "
        f"{fmt_int(result.rows)} readings of {fmt_int(result.assets)} assets, "
        f"{condition['share_unseen']:.1%} in unseen operating conditions ({seconds:.1f} s)"
    )
    ranked = sorted(
        (c for c in result.columns.values() if c.score is not None and c.threshold),
        key=lambda c: -float(c.score or 0.0) / float(c.threshold or 1.0),
    )
    table = Table(title="Columns nearest their thresholds")
    for name in ("column", "test", "score", "threshold", "drifted"):
        table.add_column(name, justify="left" if name in ("column", "test") else "right")
    for column in ranked[:10]:
        table.add_row(
            escape(column.name),
            column.test,
            f"{column.score:.4f}",
            f"{column.threshold:.4f}",
            "[red]yes[/]" if column.drifted else "",
        )
    out.print(table)
    prediction = result.prediction_drift
    if prediction:
        shift = prediction.get("rul_shift")
        out.print(
            f"prediction drift: failure-probability PSI "
            f"{prediction['failure_probability_psi']:.3f}"
            + (f", predicted RUL shift {shift:+.1f} cycles" if shift is not None else "")
            + (" [yellow](past its threshold)[/]" if prediction["drifted"] else "")
        )


app.command("drift")(drift)
app.command("run")(monitor_live.run)
