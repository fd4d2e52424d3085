"""Time a full default ``prognos train`` on real C-MAPSS (cross-validation, final fit, logging).

Run: ``.venv/bin/python bench/bench_train.py [--subset FD001] [--home /tmp/bench-home]``.
Prints seconds per stage, per-member fit time summed over folds, peak RSS and the headline
cross-validation figures. Takes minutes: it is the real thing, not a sample.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rich.console import Console
from rich.table import Table

from prognos.config import get_settings
from prognos.data.sources import load_source
from prognos.training.config import TrainConfig
from prognos.training.flow import train

DEFAULT_CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--cmapss", type=Path, default=DEFAULT_CMAPSS)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="prognos-bench-"))
    data = load_source(f"cmapss:{args.cmapss / f'train_{args.subset}.txt'}")
    outcome = train(data, TrainConfig(), get_settings(home=home), name=f"bench-{args.subset}")
    console = Console()
    table = Table(title=f"prognos train, {args.subset}, default configuration")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for stage, seconds in outcome.seconds.items():
        table.add_row(f"{stage} (s)", f"{seconds:.1f}")
    for member, seconds in outcome.cv.fit_seconds.items():
        table.add_row(f"cv fit, {member}, all folds (s)", f"{seconds:.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table.add_row("peak RSS (MiB)", f"{peak:.0f}")
    console.print(table)
    console.print(outcome.metrics.T.round(3).to_string())
    console.print(f"home: {home}")


if __name__ == "__main__":
    main()
