"""``prognos train | predict | evaluate`` and ``prognos models list | promote | rollback``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
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
    steps,
    valid_readings,
    write_table,
)
from prognos.cli.data import EventsOption, SpecOption
from prognos.cli.spark import Engine, EngineOption
from prognos.errors import DataSourceError

if TYPE_CHECKING:
    import pandas as pd

    from prognos.cli._common import CliState
    from prognos.storage.database import Database
    from prognos.training.flow import TrainOutcome

DataOption = Annotated[str, typer.Option("--data", help="Data source KIND:PATH.")]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="Any MLflow model URI: models:/NAME@champion, models:/NAME/3, models:/NAME/latest, "
        "runs:/RUN/model.",
    ),
]

models_app = typer.Typer(help="Registered model versions.", no_args_is_help=True)

_SHOWN = [
    "rmse",
    "mae",
    "phm08",
    "precision",
    "recall",
    "f2",
    "roc_auc",
    "pr_auc",
    "expected_cost",
    "coverage",
]


def train(
    ctx: typer.Context,
    data: DataOption,
    name: Annotated[
        str | None, typer.Option(help="Registered model name \\[default: fleet name].")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TrainConfig YAML.")] = None,
    spec: SpecOption = None,
    events: EventsOption = None,
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            help="Also write the run as JSON here (name, version, run, snapshot, metrics).",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Validate, build features, cross-validate by asset, fit the ensemble, log, register, gate."""
    from prognos.monitoring.build import profile_from_training
    from prognos.training.config import TrainConfig
    from prognos.training.flow import train as run_training

    state = get_state(ctx, home)
    train_config = TrainConfig.from_yaml(config) if config else TrainConfig()
    fleet = load_fleet(state, data, spec, events)
    n_steps = (
        4 + train_config.folds * len(train_config.active_members()) + len(train_config.ensemble)
    )
    with steps(state.err, n_steps) as step:
        outcome = run_training(
            fleet,
            train_config,
            state.settings,
            name=name,
            progress=step,
            reference=profile_from_training,  # the drift reference, saved with the version
        )
    out = state.out
    report = outcome.validation
    out.print(
        f"{fmt_int(report.valid_rows)} valid rows of {fmt_int(report.total_rows)} "
        f"({fmt_int(report.quarantined_rows)} quarantined), "
        f"{train_config.folds}-fold cross-validation grouped by asset, "
        f"{train_config.cuts_per_asset} cuts per validation asset"
    )
    out.print(_metrics_table(outcome.metrics))
    post = outcome.bundle.post
    out.print(
        f"alert threshold {post.threshold:.3f} (cost-optimal, missed failure "
        f"{train_config.costs.missed_failure:,.0f}, needless inspection "
        f"{train_config.costs.false_alarm:,.0f}); F2-optimal {post.f2_threshold:.3f}"
    )
    out.print(
        "ensemble weights: RUL "
        + _weights(post.rul_weights)
        + "; failure log-odds slopes "
        + _weights(post.stack.coef_)
    )
    ci = post.intervals
    out.print(
        f"{100 * ci.coverage:g}% RUL interval against the true RUL: open above the cap for "
        f"{100 * ci.open_share_:.0f}% of the cross-validation rows (reported as 'more than L')"
    )
    for warning in outcome.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    verdict = (
        "[green]promoted to champion[/]"
        if outcome.promoted
        else "[yellow]not promoted[/]: " + escape("; ".join(outcome.gate.reasons))
    )
    out.print(f"registered [bold]{escape(outcome.name)}[/] version {outcome.version}: {verdict}")
    out.print(
        f"took {outcome.seconds['total']:.0f} s (cross-validation "
        f"{outcome.seconds['cross_validation']:.0f} s, final fit after it "
        f"{outcome.seconds['final_fit']:.0f} s); run {outcome.run_id}"
    )
    out.print(
        f"MLflow UI: mlflow ui --backend-store-uri {escape(state.settings.tracking_uri)}",
        soft_wrap=True,
    )
    if summary is not None:
        _write_json(summary, _summary(outcome))


def _summary(outcome: TrainOutcome) -> dict[str, object]:
    figures = outcome.bundle.metadata.get("metrics", {})
    return {
        "name": outcome.name,
        "version": outcome.version,
        "run_id": outcome.run_id,
        "promoted": outcome.promoted,
        "snapshot": outcome.snapshot,
        "data_hash": outcome.bundle.metadata.get("data_hash"),
        "metrics": _finite(figures if isinstance(figures, dict) else {}),
    }


def _finite(figures: dict[str, float]) -> dict[str, float | None]:
    return {k: float(v) if math.isfinite(v) else None for k, v in figures.items()}


def _write_json(path: Path, payload: dict[str, object]) -> None:
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise DataSourceError(f"cannot write {path}: {exc}") from exc


def _metrics_table(metrics: pd.DataFrame) -> Table:
    """Metrics as rows, models as columns: fits an 80-column terminal."""
    table = Table(title="Cross-validation by asset (out of fold, cross-fitted thresholds)")
    table.add_column("metric")
    for model in metrics.index:
        table.add_column(str(model), justify="right")
    rows = metrics.to_dict(orient="index")
    for column in _SHOWN:
        style = ",.0f" if column in ("expected_cost", "phm08") else ".3f"
        table.add_row(column, *[format(float(rows[m][column]), style) for m in rows])
    return table


def riskiest_table(predictions: pd.DataFrame, title: str, top: int = 10) -> Table:
    """The assets most likely to fail within H; a ``true_rul`` column is shown when present."""
    risky = predictions.sort_values("failure_probability", ascending=False).head(top)
    truth = "true_rul" in risky.columns
    table = Table(title=title)
    columns = [
        "asset",
        "cycle",
        "RUL",
        "90% interval",
        *(["true RUL"] if truth else []),
        "P(fail within H)",
        "inspect",
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for row in risky.to_dict(orient="records"):
        table.add_row(
            str(row["asset_id"]),
            str(row["cycle"]),
            f"{row['rul']:.0f}",
            _interval(row["rul_lower"], row["rul_upper"]),
            *([f"{row['true_rul']:.0f}"] if truth else []),
            f"{row['failure_probability']:.2f}",
            "yes" if row["alert"] else "",
        )
    return table


def _interval(lower: float, upper: float) -> str:
    """``60-100``, or ``> 60`` for an interval open above (no finite upper end)."""
    return f"> {lower:.0f}" if not math.isfinite(upper) else f"{lower:.0f}-{upper:.0f}"


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in weights.items())


def _load_model(state: CliState, uri: str) -> object:
    import mlflow
    from mlflow.exceptions import MlflowException

    from prognos.registry.tracking import connect

    connect(state.settings)
    try:
        with state.err.status(f"Loading {escape(uri)}"):
            return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise DataSourceError(f"cannot load model {uri}: {exc}") from exc


def predict(
    ctx: typer.Context,
    data: DataOption,
    model: ModelOption,
    output: Annotated[str, typer.Option("--output", "-o", help="CSV file (or csv:/parquet:).")],
    spec: SpecOption = None,
    events: EventsOption = None,
    engine: EngineOption = Engine.pandas,
    home: HomeOption = None,
) -> None:
    """One row per asset at its last cycle: RUL with its interval, failure probability, alert."""
    state = get_state(ctx, home)
    if engine is Engine.spark:
        from prognos.cli.spark import spark_predict

        loaded = _load_model(state, model)
        bundle = loaded.unwrap_python_model().bundle  # type: ignore[attr-defined]
        predictions = spark_predict(state, data, spec, bundle)
    else:
        readings = valid_readings(state, data, spec, events, "predict from")
        loaded = _load_model(state, model)
        predictions = loaded.predict(readings)  # type: ignore[attr-defined]
    kind, path = parse_table_target(output if ":" in output else f"csv:{output}", "predictions")
    write_table(predictions, path, kind)
    out = state.out
    out.print(
        f"{fmt_int(len(predictions))} assets predicted, {int(predictions['alert'].sum())} alerts"
    )
    table = riskiest_table(predictions, "Riskiest assets")
    out.print(table)
    path_line(out, "wrote", path)


def evaluate(
    ctx: typer.Context,
    data: DataOption,
    model: ModelOption,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="True RUL at each asset's last cycle: "
            "one number per line in asset order, or a CSV with "
            "asset_id,rul.",
            show_default=False,
        ),
    ] = None,
    cut: Annotated[
        int | None,
        typer.Option(
            "--cut",
            help="Instead of --truth, for run-to-failure data: cut each asset at a random "
            "cycle (this seed) and score against the cycles it had left.",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option("--metrics", help="Also write the figures as JSON here.", show_default=False),
    ] = None,
    spec: SpecOption = None,
    events: EventsOption = None,
    home: HomeOption = None,
) -> None:
    """Every metric against the true RUL at each asset's last cycle."""
    from prognos.data.labels import truncate_trajectories
    from prognos.errors import ConfigError
    from prognos.training.evaluation import evaluate_predictions, read_truth

    if (truth is None) == (cut is None):
        raise ConfigError(
            "give the true RUL with --truth FILE, or --cut SEED for run-to-failure data"
        )
    state = get_state(ctx, home)
    readings = valid_readings(state, data, spec, events, "predict from")
    known = None
    if cut is not None:
        readings, known = truncate_trajectories(readings, seed=cut)
    loaded = _load_model(state, model)
    predictions = loaded.predict(readings)  # type: ignore[attr-defined]
    bundle = loaded.unwrap_python_model().bundle  # type: ignore[attr-defined]
    if known is not None:
        actual = known.loc[predictions["asset_id"].to_numpy()].reset_index(drop=True)
    else:
        assert truth is not None
        actual = read_truth(truth, predictions["asset_id"])
    figures = evaluate_predictions(
        predictions, actual, horizon=bundle.horizon, rul_cap=bundle.rul_cap
    )
    if metrics is not None:
        _write_json(metrics, {"model": model, "data": data, **_finite(figures)})
    table = Table(title=f"{model} on {data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,.4g}")
    state.out.print(table)


@models_app.command("list")
def list_models(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    home: HomeOption = None,
) -> None:
    """Versions of a registered model with their cross-validation figures and aliases."""
    from prognos.registry import versions
    from prognos.registry.tracking import connect

    state = get_state(ctx, home)
    client = connect(state.settings)
    table = Table(title=f"{name}")
    for column in ("version", "aliases", "rmse", "f2", "recall", "created", "run"):
        table.add_column(column)
    import pandas as pd

    for v in versions.list_versions(client, name):
        table.add_row(
            str(v.version),
            ",".join(v.aliases),
            f"{v.metrics.get('rmse', float('nan')):.2f}",
            f"{v.metrics.get('f2', float('nan')):.3f}",
            f"{v.metrics.get('recall', float('nan')):.3f}",
            str(pd.Timestamp(v.created, unit="ms").floor("s")),
            v.run_id[:8],
        )
    state.out.print(table)


@models_app.command("promote")
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
    home: HomeOption = None,
) -> None:
    """Make a version the champion (no gate: an operator's explicit decision)."""
    from prognos.registry import champion
    from prognos.registry.tracking import connect

    state = get_state(ctx, home)
    client = connect(state.settings)
    with _audit_db(state) as db:
        champion.promote(client, db, name, version, _cli_actor())
    state.out.print(f"{escape(name)} version {version} is now champion")


@models_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    home: HomeOption = None,
) -> None:
    """Move the champion back to the previous champion."""
    from prognos.registry import champion
    from prognos.registry.tracking import connect

    state = get_state(ctx, home)
    client = connect(state.settings)
    with _audit_db(state) as db:
        version = champion.rollback(client, db, name, _cli_actor())
    state.out.print(f"{escape(name)} champion rolled back to version {version}")


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


@contextmanager
def _audit_db(state: CliState) -> Iterator[Database]:
    """The database the move is audited in (migrated first), closed after."""
    from prognos.storage.database import Database, database_url

    db = Database(database_url(state.settings))
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
