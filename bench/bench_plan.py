"""The maintenance plan against "inspect the riskiest first", on a simulated fleet whose true
failure times are known.

1. Train the demo's model (``prognos demo``'s quick settings) on ``--train-assets`` simulated
   run-to-failure assets, or load ``--model URI`` from ``--home``.
2. Simulate ``--assets`` unseen assets of the same kind, cut each at a random cycle leaving at
   most 150 cycles to failure (as ``prognos demo`` does), and predict each at its cut.
   One cycle is taken as one day.
3. For each crew count (``--crews``, over ``--days``): the expected cost of the optimal plan
   (MILP), of riskiest-first (the alerted assets by failure probability, as ``GET /assets`` ranks
   them, and by earliest median failure) and of doing nothing; the realised cost when failure
   times are drawn from the same distributions (mean over ``--scenarios`` draws); and the
   realised cost against the simulator's true failure times, the honest check (the model's
   intervals can be wrong; the draws assume they are right).
4. Solver time for 100 / 1,000 / 10,000 assets (rows resampled with replacement from the predicted
   fleet, new ids), crews 5 and ``--days``.

    .venv/bin/python bench/bench_plan.py                      # trains first (a few minutes)
    .venv/bin/python bench/bench_plan.py --home H --model models:/plan-bench/1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import mlflow
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from prognos.config import get_settings
from prognos.data.labels import truncate_trajectories
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.planning import Costs, Plan, plan_fleet
from prognos.planning.baseline import riskiest_first
from prognos.planning.fleet import FleetRisk
from prognos.registry.tracking import connect

DEMO_TRAINING = {  # prognos.cli.demo.DEMO_TRAINING
    "folds": 3,
    "cuts_per_asset": 3,
    "members": {
        "xgboost": {"params": {"n_estimators": 200}},
        "sequence": {"params": {"max_epochs": 6}},
        "forest": {"enabled": False},
    },
}


def _model_uri(args: argparse.Namespace, console: Console) -> str:
    if args.model:
        return str(args.model)
    from prognos.training.config import TrainConfig
    from prognos.training.flow import train

    start = time.perf_counter()
    fleet = simulate_fleet(SimulatorConfig(n_assets=args.train_assets, seed=args.seed))
    outcome = train(
        fleet, TrainConfig.model_validate(DEMO_TRAINING), get_settings(home=args.home),
        name="plan-bench",
    )  # fmt: skip
    console.print(
        f"trained plan-bench version {outcome.version} on {args.train_assets} simulated assets "
        f"in {time.perf_counter() - start:.0f} s"
    )
    return f"models:/plan-bench/{outcome.version}"


def _predict(args: argparse.Namespace, uri: str, console: Console) -> pd.DataFrame:
    connect(get_settings(home=args.home))
    model = mlflow.pyfunc.load_model(uri)
    unseen = simulate_fleet(SimulatorConfig(n_assets=args.assets, seed=args.seed + 1000))
    cut, truth = truncate_trajectories(unseen.readings, seed=args.seed, max_rul=150)
    start = time.perf_counter()
    predictions = model.predict(cut.reset_index(drop=True))
    predictions["true_rul"] = truth.loc[predictions["asset_id"]].to_numpy()
    console.print(
        f"predicted {len(predictions)} unseen assets in {time.perf_counter() - start:.0f} s; "
        f"{int((predictions['true_rul'] <= args.days).sum())} truly fail within {args.days} days, "
        f"{int(predictions['alert'].sum())} alerted, "
        f"{int(predictions['rul_open_above'].sum())} intervals open above"
    )
    return predictions


def _comparison(args: argparse.Namespace, predictions: pd.DataFrame, console: Console) -> None:
    fleet = FleetRisk.from_frame(predictions)
    truth = predictions["true_rul"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(args.seed)
    table = Table(title=f"{len(fleet)} assets, {args.days} days, costs 50,000 / 2,000")
    for column in ("crews", "policy", "visits", "expected", "realised (draws)",
                   "realised (true)", "missed (true)"):  # fmt: skip
        table.add_column(column, justify="left" if column == "policy" else "right")
    for crews in args.crews:
        result = plan_fleet(fleet, crews=crews, days=args.days, costs=Costs.default())
        draws = result.distributions.sample(rng, args.scenarios)
        earliest = riskiest_first(
            fleet, result.distributions, result.table, crews, order="earliest"
        )
        for plan in (result.plan, result.baseline, earliest, _idle(result.plan)):
            day = plan.day_of
            deadline = np.where(day > 0, day - 1, args.days)
            table.add_row(
                str(crews),
                plan.policy,
                str(len(plan.visits)),
                f"{plan.expected_cost:,.0f}",
                f"{result.table.realised(day, draws):,.0f}",
                f"{result.table.realised(day, truth):,.0f}",
                str(int((truth <= deadline).sum())),
            )
        table.add_section()
    console.print(table)


def _idle(plan: Plan) -> Plan:
    """Doing nothing, as a plan (for the table)."""
    from dataclasses import replace

    return replace(
        plan, policy="no inspection", visits=(), expected_cost=plan.expected_cost_idle,
        day_of=np.zeros_like(plan.day_of),
    )  # fmt: skip


def _timing(args: argparse.Namespace, predictions: pd.DataFrame, console: Console) -> None:
    table = Table(title=f"Solver time (crews 5, {args.days} days; rows resampled)")
    for column in ("assets", "MILP status", "plan seconds", "riskiest-first seconds"):
        table.add_column(column, justify="right")
    rng = np.random.default_rng(args.seed + 1)
    for n in args.sizes:
        rows = predictions.iloc[rng.integers(0, len(predictions), n)].reset_index(drop=True)
        rows["asset_id"] = [f"r{i}" for i in range(n)]
        start = time.perf_counter()
        result = plan_fleet(FleetRisk.from_frame(rows), crews=5, days=args.days)
        total = time.perf_counter() - start
        table.add_row(
            f"{n:,}", result.plan.status, f"{result.plan.seconds:.3f} (all: {total:.2f})",
            f"{result.baseline.seconds:.4f}",
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--train-assets", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--crews", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 5])
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000, 10000]
    )
    parser.add_argument("--scenarios", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--model", default=None, help="A model URI in --home; trains when unset.")
    args = parser.parse_args()
    console = Console(width=160)
    if args.home is None:
        args.home = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    console.print(f"home {args.home}")
    predictions = _predict(args, _model_uri(args, console), console)
    _comparison(args, predictions, console)
    _timing(args, predictions, console)


if __name__ == "__main__":
    main()
