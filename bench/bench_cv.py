"""Cross-validation alone on real C-MAPSS: the table a model change is judged by.

Run: ``.venv/bin/python bench/bench_cv.py --subset FD001 [--config FILE] [--save oof.parquet]
[--jobs N]`` (``--jobs 1``: every fit in this process, as before the worker processes);
``--oof oof.parquet`` re-scores saved out-of-fold member predictions with the current
post-processing (blend, calibration, threshold, intervals) in seconds, without training anything.
Prints per-member fit time, the metrics table (capped and raw-truth RMSE, F2, expected cost,
interval coverage against the raw truth) and the interval coverage per predicted-RUL band.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd
from rich.console import Console

from prognos.data.sources import load_source
from prognos.training.config import TrainConfig
from prognos.training.cv import CVResult, cross_fit, cross_validate
from prognos.training.flow import prepare
from prognos.training.report import band_coverage, metrics_table

DEFAULT_CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--cmapss", type=Path, default=DEFAULT_CMAPSS)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None, help="write the OOF frame here")
    parser.add_argument("--oof", type=Path, default=None, help="re-score a saved OOF frame")
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes for the fits [auto: cv_jobs]"
    )
    args = parser.parse_args()
    console = Console()
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    start = time.perf_counter()
    if args.oof is not None:
        oof = pd.read_parquet(args.oof)
        members = sorted(c.removeprefix("rul__") for c in oof.columns if c.startswith("rul__"))
        oof = oof[[c for c in oof.columns if "@" not in c]].copy()
        ensemble = [str(m) for m in config.ensemble if m in members]
        cv = CVResult(oof=oof, members=members, ensemble=ensemble)
        cv.fold_thresholds = cross_fit(oof, members, ensemble, config, config.rul_cap or 125)
    else:
        data = load_source(f"cmapss:{args.cmapss / f'train_{args.subset}.txt'}")
        readings, labels, _, fleet = prepare(data, config)
        cv = cross_validate(readings, labels, fleet, config, progress=console.log, jobs=args.jobs)
    seconds = time.perf_counter() - start
    if args.save is not None:
        cv.oof.to_parquet(args.save)
    table = metrics_table(cv, config.costs.missed_failure, config.costs.false_alarm)
    console.print(f"[bold]{args.oof.name if args.oof else args.subset}[/]: {seconds:.1f} s")
    for member, fit in cv.fit_seconds.items():
        console.print(f"  cv fit {member}: {fit:.1f} s (all folds)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"  peak RSS {peak:.0f} MiB")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        console.print(table.round(3).to_string())
        if cv.ensemble:
            console.print(band_coverage(cv.oof, "ensemble").round(3).to_string())


if __name__ == "__main__":
    main()
