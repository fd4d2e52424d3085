"""What training on part of the fleet costs: FD002, cut-point training sets prepared on Spark.

5-fold cross-validation by asset (GroupKFold, shuffled, seed 0). In each fold the feature
pipeline is fitted on the fold's training assets (on the driver, as ``--engine spark`` does), then
one Spark job builds the training set: features and labels at ``--train-cuts`` random cycles per
training asset (true RUL at most 1.2 x the cap, as the C-MAPSS test fleets are cut); another the
held-out assets' evaluation rows (20 cuts per asset, another seed). Each member (``--members``:
XGBoost by default, ``sequence`` the network, trained on the windows Spark prepares at the same
cuts) trains on the cut rows of 25%, 50% or 100% of the training assets (whole assets, chosen by
a hash of the id: the 25% sample is inside the 50% one), its alert threshold is the F2-optimal
one on a fifth of those assets held out of its fit, and it is scored on the fold's held-out
assets only::

    .venv/bin/python bench/bench_spark_train.py                      # FD002, 25/50/100%
    .venv/bin/python bench/bench_spark_train.py --folds 3 --fractions 0.25,1
    .venv/bin/python bench/bench_spark_train.py --members xgboost,sequence

Printed: RMSE (capped RUL) and F2 per member and fraction, mean and spread over the folds, the
seconds its fits took, and the total time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import cast

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
from prognos.training.config import MemberName, TrainConfig
from prognos.training.metrics import classification_metrics, regression_metrics

CMAPSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmapss"


def score_fold(
    train_rows: pd.DataFrame,
    test_rows: pd.DataFrame,
    names: list[str],
    config: TrainConfig,
    member: MemberName,
) -> dict[str, float]:
    """Fit on 4/5 of the training assets, pick the F2 threshold on the last fifth, refit on all
    of them, score the held-out fold."""
    started = time.perf_counter()
    window = config.window if member == "sequence" else None
    inner = GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=config.seed)
    fit_idx, tune_idx = next(inner.split(train_rows, groups=train_rows[ASSET]))
    probe = fit_member(train_rows.iloc[fit_idx], names, config, member)
    X_tune, y_tune = cut_point_input(train_rows.iloc[tune_idx], names, window)
    threshold = f2_optimal_threshold(y_tune.failed, probe.predict_proba(X_tune))
    fitted = fit_member(train_rows, names, config, member)
    X, y = cut_point_input(test_rows, names, window)
    rul, proba = fitted.predict_rul_and_proba(X)
    return {
        "rmse": regression_metrics(y.rul, rul)["rmse"],
        "f2": classification_metrics(y.failed, proba, threshold)["f2"],
        "assets": float(train_rows[ASSET].nunique()),
        "rows": float(len(train_rows)),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"cmapss:{CMAPSS / 'train_FD002.txt'}")
    parser.add_argument("--fractions", default="0.25,0.5,1")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train-cuts", type=int, default=50)
    parser.add_argument("--members", default="xgboost", help="xgboost, sequence, forest")
    args = parser.parse_args()
    started = time.perf_counter()
    console = Console(width=160)
    config = TrainConfig()
    fractions = [float(f) for f in args.fractions.split(",")]
    members = [cast(MemberName, m) for m in args.members.split(",")]
    # The network's windows ride along with the cut rows when it is scored.
    window = config.window if "sequence" in members else None
    settings = get_settings(spark_master="local[2]")
    spark = spark_session(settings, app_name="bench-spark-train")
    spark.conf.set("spark.sql.shuffle.partitions", "4")
    readings = read_readings(spark, args.data)
    cap = float(readings.fleet.labels.rul_cap)
    assets = np.array(sorted(r[0] for r in readings.frame.select(ASSET).distinct().collect()))
    folds = GroupKFold(n_splits=args.folds, shuffle=True, random_state=0)
    results: dict[tuple[str, float], list[dict[str, float]]] = {
        (m, f): [] for m in members for f in fractions
    }
    for fold, (train_idx, test_idx) in enumerate(folds.split(assets, groups=assets)):
        held = [a.item() for a in assets[test_idx]]
        train = replace(readings, frame=readings.frame.where(~readings.frame[ASSET].isin(held)))
        test = replace(readings, frame=readings.frame.where(readings.frame[ASSET].isin(held)))
        n_train = len(train_idx)
        pipeline = jobs.fit_pipeline(train, max_assets=settings.spark_fit_assets, n_assets=n_train)
        names = list(pipeline.feature_names_out_)
        common = partial(jobs.training_set, max_rul=1.2 * cap, assets_per_group=250, window=window)
        train_rows = common(
            spark, train, pipeline, cuts=args.train_cuts, seed=fold, n_assets=n_train
        ).cache()
        test_rows = common(
            spark, test, pipeline, cuts=20, seed=100 + fold, n_assets=len(held)
        ).toPandas()
        for fraction in fractions:
            rows = jobs.sample_assets(train_rows, fraction).toPandas()
            rows = rows.sort_values([ASSET, "time"]).reset_index(drop=True)
            for member in members:
                results[member, fraction].append(score_fold(rows, test_rows, names, config, member))
                last = results[member, fraction][-1]
                console.print(
                    f"fold {fold + 1}: {member} on {fraction:.0%} of the assets "
                    f"({last['assets']:.0f}, {last['rows']:.0f} rows): RMSE {last['rmse']:.2f}, "
                    f"F2 {last['f2']:.3f}, {last['seconds']:.0f} s "
                    f"[{time.perf_counter() - started:.0f} s]"
                )
        train_rows.unpersist()
    table = Table(title=f"Members trained on a sample of {args.data.split('/')[-1]}'s assets")
    columns = ("member", "assets used", "train assets/fold", "RMSE mean ± sd", "F2 mean ± sd")
    for column in (*columns, "fit s/fold"):
        table.add_column(column, justify="right")
    for (name, fraction), scores in results.items():
        rmse = np.array([s["rmse"] for s in scores])
        f2 = np.array([s["f2"] for s in scores])
        table.add_row(
            name,
            f"{fraction:.0%}",
            f"{np.mean([s['assets'] for s in scores]):.0f}",
            f"{rmse.mean():.2f} ± {rmse.std(ddof=1):.2f}",
            f"{f2.mean():.3f} ± {f2.std(ddof=1):.3f}",
            f"{np.mean([s['seconds'] for s in scores]):.0f}",
        )
    console.print(table)
    console.print(f"{args.folds} folds in {time.perf_counter() - started:.0f} s (local[2])")
    spark.stop()


if __name__ == "__main__":
    main()
