"""Time the fleet simulator: batch generation by fleet size and the live-stream reading rate.

Run: ``.venv/bin/python bench/bench_simulator.py``. Batch times are the best of a few runs (the
simulator is deterministic, so runs differ only by machine noise).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from functools import partial

from rich.console import Console
from rich.table import Table

from prognos.data.simulator import SimulatorConfig, simulate_fleet, stream_readings

SIZES = (100, 1_000, 10_000)
STREAM_READINGS = 200_000


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    console = Console()
    table = Table(title=f"simulate_fleet, best of runs ({os.cpu_count()} CPUs)")
    for column in ("mode", "assets", "rows", "seconds", "rows/s"):
        table.add_column(column, justify="right")
    for mode in ("run_to_failure", "telemetry"):
        for n_assets in SIZES:
            config = SimulatorConfig(n_assets=n_assets, mode=mode)
            rows = len(simulate_fleet(config).readings)
            seconds = best_of(partial(simulate_fleet, config), 5 if n_assets < 10_000 else 3)
            table.add_row(
                mode, f"{n_assets:,}", f"{rows:,}", f"{seconds:.4f}", f"{rows / seconds:,.0f}"
            )
    console.print(table)

    config = SimulatorConfig(n_assets=1_000, seed=1)  # ~235k readings, enough for the sample
    start = time.perf_counter()
    stream = stream_readings(config)
    next(stream)
    first = time.perf_counter() - start
    start = time.perf_counter()
    consumed = sum(1 for _ in itertools.islice(stream, STREAM_READINGS - 1))
    steady = time.perf_counter() - start
    stream_table = Table(title="stream_readings (1,000 assets, run_to_failure)")
    for column in (
        "readings",
        "first reading s",
        "then s",
        "readings/s (steady)",
        "readings/s (all)",
    ):
        stream_table.add_column(column, justify="right")
    stream_table.add_row(
        f"{consumed + 1:,}",
        f"{first:.4f}",
        f"{steady:.3f}",
        f"{consumed / steady:,.0f}",
        f"{(consumed + 1) / (first + steady):,.0f}",
    )
    console.print(stream_table)


if __name__ == "__main__":
    main()
