"""What training on part of the fleet costs: FD002, cut-point training sets prepared on Spark.

5-fold cross-validation by asset (GroupKFold, shuffled, seed 0). In each fold the feature
pipeline is fitted on the fold's training assets (on the driver, as ``--engine spark`` does), then
one Spark job builds the training set: features and labels at ``--train-cuts`` random cycles per
training asset (true RUL at most 1.2 x the cap, as the C-MAPSS test fleets are cut); another the
held-out assets' evaluation rows (20 cuts per asset, another seed). The XGBoost member trains on
the cut rows of 25%, 50% or 100% of the training assets (whole assets, chosen by a hash of the id:
the 25% sample is inside the 50% one), its alert threshold is the F2-optimal one on a fifth of
those assets held out of its fit, and it is scored on the fold's held-out assets only::

    .venv/bin/python bench/bench_spark_train.py                      # FD002, 25/50/100%
    .venv/bin/python bench/bench_spark_train.py --folds 3 --fractions 0.25,1

Printed: RMSE (capped RUL) and F2 per fraction, mean and spread over the folds, and the time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from prognos.config import get_settings
from prognos.fleet import ASSET
from prognos.models.decision import f2_optimal_threshold
from prognos.spark import jobs
from prognos.spark.session import spark_session
from prognos.spark.sources import read_readings
from prognos.spark.training import cut_point_input, fit_member
from prognos.training.config import TrainConfig
from prognos.training.metrics import classification_metrics, regression_metrics

CMAPSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmapss"


def score_fold(
    train_rows: pd.DataFrame, test_rows: pd.DataFrame, names: list[str], config: TrainConfig
) -> dict[str, float]:
    """Fit on 4/5 of the training assets, pick the F2 threshold on the last fifth, refit on all
    of them, score the held-out fold."""
    inner = GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=config.seed)
    fit_idx, tune_idx = next(inner.split(train_rows, groups=train_rows[ASSET]))
    probe = fit_member(train_rows.iloc[fit_idx], names, config)
    X_tune, y_tune = cut_point_input(train_rows.iloc[tune_idx], names)
    threshold = f2_optimal_threshold(y_tune.failed, probe.predict_proba(X_tune))
    member = fit_member(train_rows, names, config)
    X, y = cut_point_input(test_rows, names)
    rul, proba = member.predict_rul_and_proba(X)
    return {
        "rmse": regression_metrics(y.rul, rul)["rmse"],
        "f2": classification_metrics(y.failed, proba, threshold)["f2"],
        "assets": float(train_rows[ASSET].nunique()),
        "rows": float(len(train_rows)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"cmapss:{CMAPSS / 'train_FD002.txt'}")
    parser.add_argument("--fractions", default="0.25,0.5,1")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train-cuts", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    console = Console(width=160)
    config = TrainConfig()
    fractions = [float(f) for f in args.fractions.split(",")]
    settings = get_settings(spark_master="local[2]")
    spark = spark_session(settings, app_name="bench-spark-train")
    spark.conf.set("spark.sql.shuffle.partitions", "4")
    readings = read_readings(spark, args.data)
    cap = float(readings.fleet.labels.rul_cap)
    assets = np.array(sorted(r[0] for r in readings.frame.select(ASSET).distinct().collect()))
    folds = GroupKFold(n_splits=args.folds, shuffle=True, random_state=0)
    results: dict[float, list[dict[str, float]]] = {f: [] for f in fractions}
    for fold, (train_idx, test_idx) in enumerate(folds.split(assets, groups=assets)):
        held = [a.item() for a in assets[test_idx]]
        train = replace(readings, frame=readings.frame.where(~readings.frame[ASSET].isin(held)))
        test = replace(readings, frame=readings.frame.where(readings.frame[ASSET].isin(held)))
        n_train = len(train_idx)
        pipeline = jobs.fit_pipeline(train, max_assets=settings.spark_fit_assets, n_assets=n_train)
        names = list(pipeline.feature_names_out_)
        common = {"max_rul": 1.2 * cap, "assets_per_group": 250}
        train_rows = jobs.training_set(
            spark, train, pipeline, cuts=args.train_cuts, seed=fold, n_assets=n_train, **common
        ).cache()
        test_rows = jobs.training_set(
            spark, test, pipeline, cuts=20, seed=100 + fold, n_assets=len(held), **common
        ).toPandas()
        for fraction in fractions:
            rows = jobs.sample_assets(train_rows, fraction).toPandas()
            rows = rows.sort_values([ASSET, "time"]).reset_index(drop=True)
            results[fraction].append(score_fold(rows, test_rows, names, config))
            last = results[fraction][-1]
            console.print(
                f"fold {fold + 1}: {fraction:.0%} of the assets ({last['assets']:.0f}, "
                f"{last['rows']:.0f} rows): RMSE {last['rmse']:.2f}, F2 {last['f2']:.3f} "
                f"[{time.perf_counter() - started:.0f} s]"
            )
        train_rows.unpersist()
    table = Table(title=f"XGBoost on a sample of {args.data.split('/')[-1]}'s assets")
    for column in ("assets used", "train assets/fold", "RMSE mean ± sd", "F2 mean ± sd"):
        table.add_column(column, justify="right")
    for fraction, scores in results.items():
        rmse = np.array([s["rmse"] for s in scores])
        f2 = np.array([s["f2"] for s in scores])
        table.add_row(
            f"{fraction:.0%}",
            f"{np.mean([s['assets'] for s in scores]):.0f}",
            f"{rmse.mean():.2f} ± {rmse.std(ddof=1):.2f}",
            f"{f2.mean():.3f} ± {f2.std(ddof=1):.3f}",
        )
    console.print(table)
    console.print(f"{args.folds} folds in {time.perf_counter() - started:.0f} s (local[2])")
    spark.stop()


if __name__ == "__main__":
    main()
