"""Time the reports: the EDA page of C-MAPSS fleets, and a model's savings.

Run: ``.venv/bin/python bench/bench_reports.py [--cmapss DIR] [--home H --model FD001 ...]``.
EDA: load, build (inspection, validation, features, figures) and write, per fleet, with the page
size; CPU time beside wall time, since the development machine is shared. Savings: the
cross-validation figures of each model given (read from its training run, no prediction).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from prognos.config import get_settings
from prognos.data.sources import load_source
from prognos.reports.business import savings_for_model
from prognos.reports.eda import build_eda

DEFAULT_CMAPSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmapss"


def bench_eda(cmapss: Path, fleets: list[str], console: Console) -> None:
    table = Table(title="prognos report eda")
    for column in ("fleet", "assets", "readings", "wall s", "cpu s", "page KiB"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for fleet in fleets:
            wall, cpu = time.perf_counter(), time.process_time()
            data = load_source(f"cmapss:{cmapss / f'train_{fleet}.txt'}")
            page, facts = build_eda(data)
            path = page.write(Path(tmp) / f"{fleet}.html")
            table.add_row(
                fleet,
                f"{facts.n_assets:,}",
                f"{facts.n_rows:,}",
                f"{time.perf_counter() - wall:.1f}",
                f"{time.process_time() - cpu:.1f}",
                f"{path.stat().st_size / 1024:,.0f}",
            )
    console.print(table)


def bench_savings(home: Path, models: list[str], console: Console) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = get_settings(home=home)
    table = Table(title="prognos report savings (cross-validation)")
    for column in ("model", "lives", "T", "rate RTF", "rate fixed", "rate prognos", "misses",
                   "vs RTF / asset", "vs fixed / asset", "seconds"):  # fmt: skip
        table.add_column(column, justify="right")
    for model in models:
        start = time.perf_counter()
        result = savings_for_model(settings, model)
        cv = result.cross_validation
        table.add_row(
            f"{result.model} v{result.version}",
            str(cv.lives),
            str(result.interval),
            f"{cv.policy('run_to_failure').cost_per_cycle:.2f}",
            f"{cv.policy('fixed_interval').cost_per_cycle:.2f}",
            f"{cv.policy('prognos').cost_per_cycle:.2f}",
            str(cv.policy("prognos").failures),
            f"{cv.against('run_to_failure').per_asset:,.0f}",
            f"{cv.against('fixed_interval').per_asset:,.0f}",
            f"{time.perf_counter() - start:.1f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cmapss", type=Path, default=DEFAULT_CMAPSS)
    parser.add_argument("--fleets", nargs="*", default=["FD001", "FD002"])
    parser.add_argument("--home", type=Path, help="a home with trained models (for savings)")
    parser.add_argument("--model", action="append", default=[], help="registered model name")
    args = parser.parse_args()
    console = Console()
    if args.fleets:
        bench_eda(args.cmapss, args.fleets, console)
    if args.home is not None and args.model:
        bench_savings(args.home, args.model, console)


if __name__ == "__main__":
    main()
