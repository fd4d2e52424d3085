"""Time the sequence member on real C-MAPSS FD001 windows.

Run: ``.venv/bin/python bench/bench_sequence.py [--cmapss DIR] [--epochs N]``.

- training: seconds per epoch over every FD001 training window (W=30, batch 256, the default
  validation split by asset) for the default LSTM and CNN, with the default thread policy;
- inference: latency of one sequence and of 100 sequences on 1 thread (median and p99 of repeats),
  the serving case.

Timings are wall-clock and sensitive to other load on the machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from prognos.data.labels import run_to_failure_labels
from prognos.data.sources import load_source
from prognos.features import FeaturePipeline
from prognos.models.base import ModelInput, Targets
from prognos.models.sequence import SequenceModel

DEFAULT_CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"
WINDOW = 30


def fd001(cmapss: Path) -> tuple[ModelInput, Targets]:
    data = load_source(f"cmapss:{cmapss / 'train_FD001.txt'}")
    labels = run_to_failure_labels(data.readings)
    pipeline = FeaturePipeline(data.spec).fit(data.readings)
    sequences, lengths = pipeline.sequences(data.readings, WINDOW)
    X = ModelInput(
        features=np.zeros((len(sequences), 0)),
        feature_names=[],
        sequences=sequences,
        lengths=lengths,
        groups=data.readings["asset_id"].to_numpy(),
    )
    y = Targets(
        rul=labels["rul_capped"].to_numpy(np.float64),
        failed=labels["failure_within_h"].to_numpy(np.int64),
    )
    return X, y


def latency(model: SequenceModel, X: ModelInput, rows: int, repeats: int) -> tuple[float, float]:
    """Median and p99 milliseconds of ``predict_rul_and_proba`` on ``rows`` sequences."""
    batch = X.take(np.arange(rows))
    for _ in range(10):
        model.predict_rul_and_proba(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_rul_and_proba(batch)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmapss", type=Path, default=DEFAULT_CMAPSS)
    parser.add_argument("--epochs", type=int, default=5, help="epochs to time per architecture")
    args = parser.parse_args()
    X, y = fd001(args.cmapss)
    console = Console()
    table = Table(title=f"SequenceModel on FD001 ({len(X):,} windows of {WINDOW}, batch 256)")
    for column in ("arch", "train threads", "s / epoch", "1 seq (1 thread)", "100 seq (1 thread)"):
        table.add_column(column)
    for arch in ("lstm", "cnn"):
        model = SequenceModel(arch=arch, max_epochs=args.epochs, patience=args.epochs)
        threads = model._cpu_threads(len(X), training=True)
        start = time.perf_counter()
        model.fit(X, y)
        per_epoch = (time.perf_counter() - start) / len(model.history_)
        single = SequenceModel(**{**model.get_params(), "threads": 1})
        single.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
        one = latency(single, X, 1, 300)
        hundred = latency(single, X, 100, 100)
        table.add_row(
            arch,
            str(threads),
            f"{per_epoch:.2f}",
            f"{one[0]:.2f} ms (p99 {one[1]:.2f})",
            f"{hundred[0]:.2f} ms (p99 {hundred[1]:.2f})",
        )
    console.print(table)
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default")


if __name__ == "__main__":
    main()
