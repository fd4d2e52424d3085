"""Drift that tells aging from change: the simulator table, and C-MAPSS against an FD001 model.

Run: ``.venv/bin/python bench/bench_drift.py [--seeds 20] [--home H --model models:/FD001@champion
--cmapss DIR]``.

Simulator (:mod:`prognos.monitoring.drill`): per seed a new design, a 60-asset training fleet
(the profile is fitted on it; no model is trained per seed: the profile needs the feature
pipeline only) and a new 30-asset fleet streamed cycle by cycle from new, judged in windows of
the last 3,000 readings every 300. Faults hit assets 1-10 from their 50th reading; SIZE is in
standard deviations of the sensor's healthy readings across the fleet (see
:mod:`prognos.data.faults`). Printed as a Markdown table, with the naive comparison (whole
training set, Evidently's defaults) beside it.

C-MAPSS (with ``--home``/``--model``): ``drift_with_model`` as ``prognos monitor drift`` runs it,
on test_FD001, train_FD002, test_FD002 and the three together with train_FD001 (121,477
readings), each timed; peak memory of the process at the end.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import pandas as pd

from prognos.monitoring.drill import DrillConfig, Scenario, run_drill, summarise

SCENARIOS = [
    Scenario("aging"),
    *(Scenario("offset", s) for s in (0.05, 0.1, 0.25)),
    *(Scenario("noise", s) for s in (0.02, 0.05, 0.1)),
    Scenario("stuck"),
    *(Scenario("regime", s) for s in (0.0, 1.0)),
]


def simulator_table(seeds: int) -> str:
    config = DrillConfig(seeds=seeds)
    start = time.perf_counter()
    outcomes = run_drill(
        SCENARIOS,
        config,
        progress=lambda s: print(f"  seed {s + 1}/{seeds} {time.perf_counter() - start:.0f} s"),
    )
    table = summarise(outcomes)
    lines = [
        f"Simulator, {seeds} seeds, windows of {config.window:,} readings every "
        f"{config.step} ({time.perf_counter() - start:.0f} s)",
        "",
        "| scenario | false alarms / clean window | detected | median delay | max delay "
        "| naive false alarms | naive detected |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict(orient="records"):
        lines.append(
            f"| {row['scenario']} | {_pct(row['false-alarm rate'])} "
            f"({int(row['clean windows'])} windows) | {_pct(row['detection rate'])} "
            f"| {_int(row['median delay'])} | {_int(row['max delay'])} "
            f"| {_pct(row['naive false-alarm rate'])} | {_pct(row['naive detection rate'])} |"
        )
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.1%}"


def _int(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:,.0f}"


def cmapss_table(home: Path, model: str, folder: Path) -> str:
    import mlflow

    from prognos.config import get_settings
    from prognos.data.sources import load_source
    from prognos.data.validation import validate_readings
    from prognos.monitoring.batch import drift_with_model
    from prognos.monitoring.profile import load_run_profile
    from prognos.registry.tracking import connect

    settings = get_settings(home=home)
    connect(settings)
    loaded = mlflow.pyfunc.load_model(model)
    bundle = loaded.unwrap_python_model().bundle
    profile = load_run_profile(settings, str(loaded.metadata.run_id))

    def readings(name: str, offset: int = 0) -> pd.DataFrame:
        data = load_source(f"cmapss:{folder / name}.txt")
        frame = validate_readings(data.readings, data.spec).valid.reset_index(drop=True)
        frame["asset_id"] = frame["asset_id"] + offset
        return frame

    batches = {name: readings(name) for name in ("test_FD001", "train_FD002", "test_FD002")}
    batches["all four files"] = pd.concat(
        [
            readings("train_FD001", 1_000),
            readings("train_FD002", 2_000),
            readings("test_FD002", 3_000),
            batches["test_FD001"],
        ],
        ignore_index=True,
    )
    lines = [
        f"C-MAPSS against {model}",
        "",
        "| data | readings | drift | share drifted | unseen conditions | predict s | drift s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, frame in batches.items():
        run = drift_with_model(bundle, profile, frame)
        result = run.result
        lines.append(
            f"| {name} | {len(frame):,} | {result.drift_detected} | {result.share_drifted:.2f} "
            f"| {result.operating_condition['share_unseen']:.1%} "
            f"| {run.seconds['predict']:.2f} | {run.seconds['drift']:.2f} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"\npeak memory of the process {peak:,.0f} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--model", default="models:/FD001@champion")
    parser.add_argument("--cmapss", type=Path, default=Path("../shared/data/cmapss"))
    args = parser.parse_args()
    if args.seeds > 0:
        print(simulator_table(args.seeds))
    if args.home is not None:
        print()
        print(cmapss_table(args.home, args.model, args.cmapss))


if __name__ == "__main__":
    main()
