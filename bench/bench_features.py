"""Time the feature pipeline's hot paths on real C-MAPSS data.

Run: ``.venv/bin/python bench/bench_features.py [--cmapss DIR] [--redis-url URL]``.

- offline: fit and transform on FD001+FD002 training data (74,390 rows); first (cold) and best of
  five (warm) transform times, and the transform's peak traced memory (NumPy allocations included);
- online: per-reading latency p50/p99 of ``OnlineFeatures.update`` with state in memory and in
  Redis on 127.0.0.1 (skipped with a note when Redis is not reachable).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from prognos.data.sources import load_source
from prognos.features import FeaturePipeline, OnlineFeatures, RedisStateStore

DEFAULT_CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"


def fd001_fd002(cmapss: Path) -> tuple[pd.DataFrame, FeaturePipeline]:
    one = load_source(f"cmapss:{cmapss / 'train_FD001.txt'}")
    two = load_source(f"cmapss:{cmapss / 'train_FD002.txt'}")
    second = two.readings.assign(asset_id=two.readings["asset_id"] + 1000)
    readings = pd.concat([one.readings, second], ignore_index=True)
    return readings, FeaturePipeline(one.spec)


def offline(readings: pd.DataFrame, pipeline: FeaturePipeline) -> list[tuple[str, str]]:
    start = time.perf_counter()
    pipeline.fit(readings)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pipeline.transform(readings)
    cold_s = time.perf_counter() - start
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        pipeline.transform(readings)
        warm.append(time.perf_counter() - start)
    # Memory in a separate call: tracing every allocation slows the call it measures.
    tracemalloc.start()
    pipeline.transform(readings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_features = len(pipeline.feature_names_out_)
    return [
        ("rows x features", f"{len(readings):,} x {n_features}"),
        ("regimes / sensors kept", f"{pipeline.regimes_.n_regimes} / {len(pipeline.sensors_)}"),
        ("fit", f"{fit_s:.3f} s"),
        ("transform, first call", f"{cold_s:.3f} s"),
        ("transform, best of 5", f"{min(warm):.3f} s"),
        ("transform, median of 5", f"{float(np.median(warm)):.3f} s"),
        ("transform peak traced memory", f"{peak / 2**20:.0f} MiB"),
        ("output matrix size", f"{len(readings) * n_features * 8 / 2**20:.0f} MiB"),
        (
            "process peak RSS",
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
        ),
    ]


def online_latency(online: OnlineFeatures, readings: pd.DataFrame) -> tuple[float, float, float]:
    records = readings.to_dict("records")
    for record in records[:50]:  # warm-up
        online.update(record)
    times = np.empty(len(records) - 50)
    for i, record in enumerate(records[50:]):
        start = time.perf_counter()
        online.update(record)
        times[i] = time.perf_counter() - start
    us = times * 1e6
    return float(np.percentile(us, 50)), float(np.percentile(us, 99)), float(us.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cmapss", type=Path, default=DEFAULT_CMAPSS)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--online-readings", type=int, default=5_000)
    args = parser.parse_args()
    console = Console()

    readings, pipeline = fd001_fd002(args.cmapss)
    table = Table(title="Offline features, FD001+FD002 train")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in offline(readings, pipeline):
        table.add_row(name, value)
    console.print(table)

    # Replay whole assets in time order: FD002 engines, six regimes, the harder case.
    replay = readings[readings["asset_id"] > 1000].head(args.online_readings)
    table = Table(title=f"Online update latency per reading ({len(replay):,} readings)")
    for column in ("state store", "p50 (us)", "p99 (us)", "mean (us)"):
        table.add_column(column, justify="right")
    p50, p99, mean = online_latency(OnlineFeatures(pipeline), replay)
    table.add_row("memory", f"{p50:.0f}", f"{p99:.0f}", f"{mean:.0f}")
    probe = OnlineFeatures(pipeline)
    store = RedisStateStore(args.redis_url, decode=probe.decode_state, namespace="prognos-bench")
    if store.ping():
        for asset in store.assets():
            store.delete(asset)
        p50, p99, mean = online_latency(OnlineFeatures(pipeline, store), replay)
        table.add_row(f"Redis {args.redis_url}", f"{p50:.0f}", f"{p99:.0f}", f"{mean:.0f}")
        for asset in store.assets():
            store.delete(asset)
    else:
        table.add_row(f"Redis {args.redis_url}", "not reachable", "-", "-")
    console.print(table)


if __name__ == "__main__":
    main()
