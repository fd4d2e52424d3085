"""``prognos demo``: the whole pipeline so far, end to end, on embedded defaults, in seconds."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import (
    CliState,
    HomeOption,
    fmt_int,
    get_state,
    path_line,
    validate_with_quarantine,
    write_table,
)
from prognos.cli.data import print_validation
from prognos.cli.demo_live import live_stream
from prognos.cli.features import build_feature_matrix
from prognos.cli.simulate import simulation_table

if TYPE_CHECKING:
    import pandas as pd

    from prognos.data.dataset import FleetData
    from prognos.features import FeaturePipeline

HEALTH = "health_index__value"
KEY_FEATURES = ("health_index__ewma_20", "health_index__slope_20")
TOP = 10


def demo(
    ctx: typer.Context,
    assets: Annotated[int, typer.Option("--assets", "-n", min=1, help="Fleet size.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the assets.")] = 0,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Also train, register and predict.")
    ] = True,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="End by serving the demo model on 127.0.0.1:PORT without API keys (Ctrl+C stops).",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="Stream new assets with a sensor fault through the ingestion core (MQTT when "
            "PROGNOS_MQTT_URL is set, else an in-process queue) and detect the fault as drift.",
        ),
    ] = True,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Run the closed loop instead: a fleet whose degradation changes is streamed, "
            "drift detected and alerted, failures reported, the model retrained, shadowed and "
            "judged at the promotion gate (a few minutes).",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Simulate -> corrupt -> validate -> features -> online parity -> train -> predict -> live
    stream with a fault detected as drift (or, with --loop, the retraining loop)."""
    started = time.perf_counter()
    if loop:
        from prognos.cli.demo_loop import loop_demo
        from prognos.flows.scenario import LoopPlan

        loop_demo(get_state(ctx, home), LoopPlan(seed=seed))
        return
    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.data.sinks import write_source
    from prognos.data.sources import load_source
    from prognos.features import FeaturePipeline  # noqa: F401  (import cost outside the timings)

    state = get_state(ctx, home)
    out, settings = state.out, state.settings
    settings.ensure_home()
    out.rule("[bold]prognos demo")
    path_line(out, "home:", settings.home)

    out.rule("1. Simulate a fleet (run to failure)")
    with state.err.status(f"Simulating {assets:,} assets"):
        clean = simulate_fleet(SimulatorConfig(n_assets=assets, seed=seed))
        clean_target = f"parquet:{settings.data_dir / 'demo.parquet'}"
        written = write_source(clean, clean_target)
    out.print(simulation_table(clean, "run_to_failure"))
    path_line(out, "wrote", written[0])

    out.rule("2. Corrupt a copy on purpose")
    dirty, injected = inject_bad_rows(clean)
    dirty_target = f"csv:{settings.data_dir / 'demo-dirty.csv'}"
    with state.err.status("Writing the dirty copy"):
        write_source(dirty, dirty_target)
    out.print(f"injected {len(injected)} bad rows to show quarantine working:")
    for what in injected.values():
        out.print(f"  - {escape(what)}")
    path_line(out, "wrote", dirty_target.removeprefix("csv:"))

    out.rule("3. Validate (bad rows go to quarantine, the rest goes on)")
    with state.err.status("Loading and validating"):
        loaded = load_source(dirty_target)
        result, quarantined = validate_with_quarantine(state, loaded, None)
    print_validation(out, result.report)
    caught = set(result.quarantine["row"].tolist()) & set(injected)
    out.print(
        f"[green]caught {len(caught)} of {len(injected)} injected rows[/]; "
        f"{fmt_int(result.report.valid_rows)} valid rows go on"
    )
    if quarantined is not None:
        path_line(out, "quarantine with reasons ->", quarantined)

    out.rule("4. Build features (offline)")
    feature_started = time.perf_counter()
    with state.err.status("Building features"):
        built = build_feature_matrix(loaded, result.valid, None)
        features_path = write_table(
            built.matrix, settings.data_dir / "demo.features.parquet", "parquet"
        )
    pipeline = built.pipeline
    out.print(
        f"{fmt_int(len(built.matrix))} rows x {len(built.features)} features, "
        f"{pipeline.regimes_.n_regimes} regimes, {len(pipeline.sensors_)} sensors kept "
        f"({len(pipeline.dropped_sensors_)} dropped), labels {', '.join(built.labels) or 'none'}, "
        f"in {time.perf_counter() - feature_started:.2f} s"
    )
    path_line(out, "wrote", features_path)

    latest = _latest(built.matrix)
    asset = latest.index[0]
    out.rule("5. Online features: replay one asset reading by reading")
    online_parity(state, pipeline, result.valid, built.matrix, asset)

    out.rule(f"Most degraded assets (top {min(TOP, len(latest))} by latest health index)")
    out.print(_summary(latest))
    if train:
        train_and_predict(state, replace(clean, readings=result.valid), seed)
        if live:
            live_stream(state, seed)
    out.print(f"done in {time.perf_counter() - started:.1f} s")
    flag = f"--home {settings.home}"
    out.print("[bold]next steps:[/] run the steps one command at a time, or try telemetry:")
    for command in (
        f"prognos data inspect {clean_target} {flag}",
        f"prognos data validate {dirty_target} {flag}",
        f"prognos features build {dirty_target} {flag}",
        f"prognos simulate --mode telemetry --assets 50 {flag}",
        f"prognos models list demo {flag}",
        "prognos --help",
    ):
        out.print(f"  {escape(command)}", soft_wrap=True, highlight=False)
    if serve and train:
        serve_demo(state, clean, port)


def sample_request(fleet: FleetData, port: int) -> str:
    """A curl line a new user can paste: one reading of a new asset, real channel names."""
    row = fleet.readings.iloc[0]
    body = {
        "equipment_id": "pump-001",
        "cycle": 1,
        "sensor_readings": {n: round(float(row[n]), 4) for n in fleet.spec.sensor_names},
        "operational_settings": {n: round(float(row[n]), 4) for n in fleet.spec.setting_names},
    }
    return (
        f"curl -s -X POST http://127.0.0.1:{port}/predict "
        f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'"
    )


def serve_demo(state: CliState, fleet: FleetData, port: int) -> None:
    """Step 8: the service with the demo model, in the foreground, keys off (local demo only)."""
    from prognos.cli.serve import run_server

    out = state.out
    out.rule(f"9. Serve models:/demo@champion on http://127.0.0.1:{port} (Ctrl+C stops)")
    out.print("API keys are OFF for this local demo only; `prognos serve` requires them.")
    out.print(f"docs: http://127.0.0.1:{port}/docs   health: http://127.0.0.1:{port}/health")
    out.print("paste this in another terminal:")
    out.print(sample_request(fleet, port), soft_wrap=True, highlight=False, markup=False)
    run_server(state.settings, "demo", port=port, auth=False)


def inject_bad_rows(data: FleetData) -> tuple[FleetData, dict[int, str]]:
    """A copy with a missing value, an out-of-range value, a duplicate and a late reading.

    Returns the copy and, per bad row position in it, what was done. Assets and positions are
    spread so that each bad row breaks one rule.
    """
    from prognos.fleet import ASSET, TIME

    readings, spec = data.readings.copy(), data.spec
    ids = readings[ASSET].unique()
    sensors = spec.sensor_names

    def row_of(k: int, fraction: float) -> int:
        asset = ids[k % len(ids)]
        rows = np.flatnonzero(readings[ASSET].to_numpy() == asset)
        return int(rows[int(len(rows) * fraction)])

    assets, times = readings[ASSET].to_numpy(), readings[TIME].to_numpy()

    def where(row: int) -> str:
        return f"asset {assets[row]} time {times[row]}"

    nan_row = row_of(1, 0.2)
    readings.loc[nan_row, sensors[0]] = np.nan
    spike_row = row_of(2, 0.4)
    spike = spec.channel(sensors[-1])
    low = spike.min if spike.min is not None else 0.0
    high = spike.max if spike.max is not None else 1.0
    spike_value = high + 10 * (high - low) + 1.0
    readings.loc[spike_row, sensors[-1]] = spike_value
    dup_row, late_row = row_of(3, 0.6), row_of(4, 0.8)

    order = list(range(len(readings)))
    order.insert(order.index(dup_row) + 1, dup_row)  # a reading delivered twice
    order.remove(late_row)
    order.insert(order.index(late_row + 3) + 1, late_row)  # arrives after three newer ones
    dirty = readings.iloc[order].reset_index(drop=True)
    notes = {
        order.index(nan_row): f"missing value: {where(nan_row)} {sensors[0]} = NaN",
        order.index(spike_row): (
            f"out-of-range value: {where(spike_row)} {sensors[-1]} = "
            f"{spike_value:.6g} (max {high:g})"
        ),
        len(order) - 1 - order[::-1].index(dup_row): f"duplicate: {where(dup_row)} sent twice",
        order.index(late_row): f"time going backwards: {where(late_row)} arrives after "
        f"time {times[late_row + 3]}",
    }
    return replace(data, readings=dirty, source=f"{data.source} (corrupted copy)"), notes


def online_parity(
    state: CliState,
    pipeline: FeaturePipeline,
    valid: pd.DataFrame,
    matrix: pd.DataFrame,
    asset: object,
) -> None:
    """Feed one asset's valid readings to OnlineFeatures; compare with the offline rows."""
    from prognos.features import OnlineFeatures
    from prognos.fleet import ASSET

    mine = (valid[ASSET] == asset).to_numpy()
    readings = valid.loc[mine]
    offline = matrix.loc[mine, pipeline.feature_names_out_].to_numpy(dtype=np.float64)
    online = OnlineFeatures(pipeline)
    with state.err.status(f"Replaying asset {asset}"):
        records = readings.to_dict(orient="records")
        rows = np.vstack([online.update({str(k): v for k, v in r.items()}) for r in records])
    last = float(np.max(np.abs(rows[-1] - offline[-1])))
    every = float(np.max(np.abs(rows - offline)))
    colour = "green" if last == 0.0 else ("yellow" if last < 1e-9 else "red")
    state.out.print(
        f"asset {asset}: {fmt_int(len(rows))} readings through OnlineFeatures "
        f"({len(online.feature_names)} features each)"
    )
    state.out.print(
        f"[{colour}]parity: last online row vs offline row: max |difference| = {last:.3g}[/] "
        f"(over all {fmt_int(len(rows))} rows: {every:.3g})",
        soft_wrap=True,
    )


def _latest(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each asset's last feature row, most degraded (highest health index) first."""
    from prognos.fleet import ASSET, TIME

    latest = matrix.sort_values([ASSET, TIME], kind="stable").groupby(ASSET).tail(1)
    return latest.set_index(ASSET).sort_values(HEALTH, ascending=False, kind="stable")


def _summary(latest: pd.DataFrame) -> Table:
    from prognos.fleet import TIME

    shown = [c for c in KEY_FEATURES if c in latest.columns]
    table = Table()
    table.add_column("asset", justify="right")
    table.add_column("cycles", justify="right")
    table.add_column("health index", justify="right")
    for column in shown:
        table.add_column(column.replace("health_index__", "HI "), justify="right")
    top = latest.head(TOP)
    columns = [top[c].tolist() for c in (TIME, HEALTH, *shown)]
    for asset, time_, health, *values in zip(top.index, *columns, strict=True):
        table.add_row(str(asset), str(time_), f"{health:.2f}", *(f"{v:.3f}" for v in values))
    return table


# Quicker than the default configuration (3 folds, fewer epochs, no forest baseline) so the demo
# stays around a minute on a laptop; `prognos train` always uses the full default.
DEMO_TRAINING = {
    "folds": 3,
    "cuts_per_asset": 3,
    "members": {
        "xgboost": {"params": {"n_estimators": 200}},
        "sequence": {"params": {"max_epochs": 6}},
        "forest": {"enabled": False},
    },
}


def train_and_predict(state: CliState, fleet: FleetData, seed: int) -> None:
    """Train and register ``demo``, then predict an unseen, truncated fleet with the champion."""
    import mlflow

    from prognos.cli.models import riskiest_table
    from prognos.data.labels import truncate_trajectories
    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.monitoring.build import profile_from_training
    from prognos.training.config import TrainConfig
    from prognos.training.flow import train

    out = state.out
    out.rule("6. Train, track and register (quick demo settings)")
    config = TrainConfig.model_validate(DEMO_TRAINING)
    with state.err.status("Cross-validating and training") as status:
        outcome = train(
            fleet,
            config,
            state.settings,
            name="demo",
            progress=lambda msg: status.update(escape(msg)),
            reference=profile_from_training,  # the drift reference the live step uses
        )
    shown = ["rmse", "mae", "precision", "recall", "f2", "roc_auc", "coverage"]
    table = Table(title="Cross-validation by asset (out of fold)")
    table.add_column("model")
    for column in shown:
        table.add_column(column, justify="right")
    for model, row in outcome.metrics.iterrows():
        table.add_row(str(model), *(f"{row[c]:.3f}" for c in shown))
    out.print(table)
    verdict = "champion" if outcome.promoted else "not promoted: " + "; ".join(outcome.gate.reasons)
    out.print(
        f"registered model [bold]demo[/] version {outcome.version} ({escape(verdict)}), "
        f"in {outcome.seconds['total']:.0f} s"
    )

    out.rule("7. Predict an unseen fleet with models:/demo@champion")
    unseen = simulate_fleet(SimulatorConfig(n_assets=30, seed=seed + 1000))
    cut, truth = truncate_trajectories(unseen.readings, seed=seed, max_rul=150)
    model = mlflow.pyfunc.load_model("models:/demo@champion")
    predictions = model.predict(cut.reset_index(drop=True))
    predictions["true_rul"] = truth.loc[predictions["asset_id"]].to_numpy()
    table = riskiest_table(
        predictions, "Riskiest assets (true RUL known only because the fleet is simulated)", TOP
    )
    out.print(table)
    out.print(
        "open the MLflow UI: "
        f"[bold]mlflow ui --backend-store-uri {escape(state.settings.tracking_uri)}[/]",
        soft_wrap=True,
    )
