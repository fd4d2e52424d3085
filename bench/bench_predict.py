"""Prediction latency from the loaded pyfunc: one asset, and a 100-asset batch.

Run after a training run, e.g.::

    .venv/bin/prognos train --data cmapss:../shared/data/cmapss/train_FD001.txt --home /tmp/h1
    .venv/bin/python bench/bench_predict.py --home /tmp/h1 --model models:/FD001@champion

Inputs are the C-MAPSS test trajectories (whole histories: features need them). Reports p50/p99
over repeated calls, through ``pyfunc.predict`` (with MLflow's schema enforcement) and through
the bundle directly.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import mlflow
import numpy as np
from rich.console import Console
from rich.table import Table

from prognos.config import get_settings
from prognos.data.sources import load_source
from prognos.registry.tracking import connect

DEFAULT_CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"


def timed(fn: object, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--model", default="models:/FD001@champion")
    parser.add_argument("--data", default=f"cmapss:{DEFAULT_CMAPSS / 'test_FD001.txt'}")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    connect(get_settings(home=args.home))
    model = mlflow.pyfunc.load_model(args.model)
    bundle = model.unwrap_python_model().bundle
    readings = load_source(args.data).readings
    assets = readings["asset_id"].unique()
    one = readings[readings["asset_id"] == assets[0]].reset_index(drop=True)
    batch = readings[readings["asset_id"].isin(assets[:100])].reset_index(drop=True)
    table = Table(title=f"{args.model} predict latency (ms)")
    for column in ("input", "rows", "path", "p50", "p99"):
        table.add_column(column, justify="right")
    for label, frame in (("1 asset", one), (f"{min(100, len(assets))} assets", batch)):
        for path, fn in (
            ("pyfunc.predict", lambda f=frame: model.predict(f)),
            ("bundle.predict", lambda f=frame: bundle.predict(f)),
        ):
            fn()  # warm-up
            p50, p99 = timed(fn, args.repeats)
            table.add_row(label, f"{len(frame):,}", path, f"{p50:.1f}", f"{p99:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
