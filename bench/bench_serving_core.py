"""The serving hot path in process (no HTTP): feature update, scoring, explanation.

Loads the champion of a registered model exactly as the service does (``load_champion``), builds
a :class:`~prognos.ingestion.predictor.Predictor` with in-memory state and replays readings through
it, cycle by cycle across assets as a live feed arrives. Thread pools are pinned as under
``prognos serve`` (``OMP_NUM_THREADS=1`` before any import; members at ``n_jobs=1``).

Readings: the C-MAPSS test trajectories matching the model's fleet (``test_FD001.txt`` for an
FD001 model) when the fleet is C-MAPSS; otherwise a simulated fleet with the model fleet's
channels (other seeds than ``prognos demo`` trains on). ``--data KIND:PATH`` overrides both.

Measured (p50/p95/p99 over ``--repeats`` calls, after a warm-up that fills every asset's window):

- ``ingest``: ``Predictor.ingest`` of one reading (validation + online feature update);
- ``score 1``: one asset, without and with the explanation (per input channel, of the served
  log-odds: XGBoost's TreeSHAP and the sequence network's DeepLift, Integrated Gradients for an
  LSTM, each times its slope in the stack); ``--no-sequence-attribution`` leaves the network as
  one term, TreeSHAP only; ``--sequence-method ig`` forces Integrated Gradients (16 steps, the
  method before DeepLift) to compare;
- ``TreeSHAP alone``: score without explanation plus the XGBoost member's TreeSHAP of the same
  rows, the cost of the explanation before it covered the served output (XGBoost's share only);
- ``score 100``: ``--batch`` assets in one call, without and with explanations (per call, and
  per asset for the explained batch: what coalescing concurrent requests buys);
- ``total``: ingest + score with explanation of one reading, the model work behind one
  ``POST /predict`` (HTTP, validation of the body and logging come on top); "of which" is its
  scoring part.
- ``scorer``: the same one-reading predict as the batcher hands it to the service's scorer, in
  this process (``LocalScorer``) and through the compute process (``ProcessScorer``, a pipe
  round trip each way), alternated on the same readings: the difference is what the compute
  process costs a lone request (unless ``--no-process``).

Run after ``prognos demo`` (model ``demo``) or ``prognos train`` (model ``FD001``)::

    .venv/bin/prognos demo --home /tmp/h1
    .venv/bin/python bench/bench_serving_core.py --home /tmp/h1 --model demo

``bench_http.py`` imports :func:`bench_readings` from here so that both benches replay the same
readings.
"""

from __future__ import annotations

import os

# As `prognos serve` does, before numpy, torch or xgboost are imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from prognos.config import get_settings
from prognos.data.sources import load_source
from prognos.fleet import ASSET, TIME, cmapss_spec

if TYPE_CHECKING:
    from prognos.fleet import FleetSpec
    from prognos.ingestion.predictor import Predictor, Scored

DEFAULT_CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"
# Assets of the simulated replay fleet are drawn with another seed than `prognos demo` trains on
# (seed 0); the design seed (the fleet's physics) stays the default, as the model's.
REPLAY_SEED = 4242


# ---------------------------------------------------------------------------- readings to replay


def default_source(fleet: FleetSpec, assets: int) -> str:
    """The data source to replay for a model trained on ``fleet`` (see the module docstring)."""
    cmapss = cmapss_spec()
    if fleet.sensor_names == cmapss.sensor_names and fleet.setting_names == cmapss.setting_names:
        name = fleet.name if re.fullmatch(r"FD00\d", fleet.name) else "FD001"
        return f"cmapss:{DEFAULT_CMAPSS / f'test_{name}.txt'}"
    return f"sim:n_assets={assets},seed={REPLAY_SEED},n_sensors={len(fleet.sensor_names)}"


def bench_readings(
    fleet: FleetSpec, data: str | None = None, *, assets: int = 100
) -> tuple[pd.DataFrame, str, int]:
    """Readings the model's fleet accepts: (canonical frame sorted by asset and time, source,
    rows dropped for values outside the fleet's plausible ranges or missing).

    Raises ``SystemExit`` with a hint when the source does not have the fleet's channels.
    """
    source = data or default_source(fleet, assets)
    loaded = load_source(source)
    frame = loaded.readings
    missing = [c for c in fleet.columns if c not in frame.columns]
    if missing:
        raise SystemExit(
            f"{source} lacks channels of the model's fleet {fleet.name!r}: {missing}; "
            "give readings of that fleet with --data KIND:PATH"
        )
    frame = frame[fleet.columns].sort_values([ASSET, TIME], kind="stable")
    keep = np.ones(len(frame), dtype=bool)
    for name in (*fleet.setting_names, *fleet.sensor_names):
        channel = fleet.channel(name)
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        keep &= ~np.isnan(values)
        if channel.min is not None:
            keep &= values >= channel.min
        if channel.max is not None:
            keep &= values <= channel.max
    dropped = int((~keep).sum())
    if dropped > 0.01 * len(frame):
        raise SystemExit(
            f"{dropped} of {len(frame)} readings of {source} are missing or outside the fleet's "
            f"ranges: not readings of fleet {fleet.name!r}? Give them with --data KIND:PATH"
        )
    return frame[keep].reset_index(drop=True), source, dropped


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One reading dict per row, as ``ReadingIn.as_reading`` builds it (string asset ids, Python
    numbers), in live-feed order: cycle by cycle, all assets."""
    rows = frame.sort_values([TIME, ASSET], kind="stable")
    out: list[dict[str, Any]] = rows.to_dict(orient="records")
    for reading in out:
        reading[ASSET] = f"bench-{reading[ASSET]}"
        reading[TIME] = int(reading[TIME])
    return out


# --------------------------------------------------------------------------------------- timing


def percentiles(seconds: list[float]) -> dict[str, float]:
    us = np.asarray(seconds) * 1e6
    return {
        "n": len(us),
        "p50_us": float(np.percentile(us, 50)),
        "p95_us": float(np.percentile(us, 95)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
    }


def fmt(us: float) -> str:
    return f"{us:,.0f} µs" if us < 1000 else f"{us / 1000:,.2f} ms"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    predictor: Predictor, readings: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    from prognos.errors import PrognosError

    assets = list(dict.fromkeys(r[ASSET] for r in readings))
    # Warm-up: fill each asset's window (and the sequence member's) before anything is timed.
    seen: dict[str, int] = {}
    live: list[dict[str, Any]] = []
    for reading in readings:
        count = seen.get(reading[ASSET], 0)
        if count < args.warmup:
            predictor.ingest(reading)
            seen[reading[ASSET]] = count + 1
        else:
            live.append(reading)
    batch = [predictor.current(a) for a in assets[: args.batch]]
    xgboost: Any = predictor.bundle.members.get("xgboost")
    for _ in range(5):
        predictor.score(batch[:1], explain=False)
        predictor.score(batch[:1], explain=True)
        predictor.score(batch, explain=True)

    # The live path of one POST /predict: ingest, then score with the explanation.
    ingest: list[float] = []
    score_live: list[float] = []
    total: list[float] = []
    for reading in live[: args.repeats]:
        start = time.perf_counter()
        try:
            scored = predictor.ingest(reading)
        except PrognosError as exc:  # filtered out by bench_readings; say so if one slips by
            raise SystemExit(f"reading rejected: {exc}") from exc
        middle = time.perf_counter()
        predictor.score([scored], explain=True)
        end = time.perf_counter()
        ingest.append(middle - start)
        score_live.append(end - middle)
        total.append(end - start)

    # Scoring alone, on assets as they stand: with and without the explanation, alternated.
    plain: list[float] = []
    explained: list[float] = []
    items: list[Scored] = [predictor.current(a) for a in assets]
    for i in range(args.repeats):
        item = [items[i % len(items)]]
        plain.append(timed(lambda item=item: predictor.score(item, explain=False)))
        explained.append(timed(lambda item=item: predictor.score(item, explain=True)))

    # The explanation as it was: TreeSHAP of the XGBoost member only, beside plain scoring.
    def treeshap_only(chosen: list[Scored]) -> None:
        predictor.score(chosen, explain=False)
        if xgboost is not None:
            xgboost.contributions(model_input(predictor, chosen))

    shap_1: list[float] = []
    for i in range(args.repeats):
        item = [items[i % len(items)]]
        shap_1.append(timed(lambda item=item: treeshap_only(item)))
    shap_batch = [timed(lambda: treeshap_only(batch)) for _ in range(args.batch_repeats)]

    # As the service scores (Batcher): the explanation on a side thread beside the ensemble.
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")
    explained_side: list[float] = []
    for i in range(args.repeats):
        item = [items[i % len(items)]]
        explained_side.append(
            timed(lambda item=item: predictor.score(item, explain=True, side=side))
        )

    batch_explained: list[float] = []
    batch_side: list[float] = []
    batch_plain: list[float] = []
    for _ in range(args.batch_repeats):
        batch_explained.append(timed(lambda: predictor.score(batch, explain=True)))
        batch_side.append(timed(lambda: predictor.score(batch, explain=True, side=side)))
        batch_plain.append(timed(lambda: predictor.score(batch, explain=False)))
    side.shutdown()

    n = len(batch)
    per_asset = {k: (v / n if k != "n" else v) for k, v in percentiles(batch_explained).items()}
    return {
        "ingest (feature update)": percentiles(ingest),
        "score 1": percentiles(plain),
        "score 1 + explanation": percentiles(explained),
        "score 1 + explanation, side thread": percentiles(explained_side),
        f"score {n}": percentiles(batch_plain),
        f"score {n} + explanation": percentiles(batch_explained),
        f"  per asset of score {n} + expl.": per_asset,
        f"score {n} + explanation, side thread": percentiles(batch_side),
        "score 1 + TreeSHAP alone (old expl.)": percentiles(shap_1),
        f"score {n} + TreeSHAP alone (old expl.)": percentiles(shap_batch),
        "total: ingest + score 1 + expl.": percentiles(total),
        "  of which score 1 + expl.": percentiles(score_live),
    }


def model_input(predictor: Predictor, items: list[Scored]) -> Any:
    """The rows ``Predictor.score`` builds from ``items``."""
    from prognos.models.base import ModelInput

    return ModelInput(
        features=np.vstack([i.features for i in items]),
        feature_names=predictor.feature_names,
        sequences=np.stack([i.sequence for i in items]),
        lengths=np.array([i.length for i in items], dtype=np.int64),
        groups=np.array([i.asset_id for i in items], dtype=object),
    )


def measure_scorers(
    settings: Any, loaded: Any, readings: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    from prognos.ingestion.compute import ProcessScorer
    from prognos.ingestion.loading import build_predictor
    from prognos.ingestion.scoring import LocalScorer

    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")
    local = LocalScorer(build_predictor(settings, loaded), side=side)
    remote = ProcessScorer(settings, loaded.name, loaded.version)
    try:
        seen: dict[str, int] = {}
        warm: list[dict[str, Any]] = []
        live: list[dict[str, Any]] = []
        for reading in readings:
            count = seen.get(reading[ASSET], 0)
            (warm if count < args.warmup else live).append(reading)
            seen[reading[ASSET]] = count + 1
        for start in range(0, len(warm), 500):
            chunk = warm[start : start + 500]
            local.process([("ingest", chunk, False)])
            remote.process([("ingest", chunk, False)])
        here: list[float] = []
        there: list[float] = []
        for reading in live[: args.repeats]:
            work = [("predict", [reading], True)]
            here.append(timed(lambda work=work: local.process(work)))
            there.append(timed(lambda work=work: remote.process(work)))
    finally:
        remote.close()
        side.shutdown()
    return {
        "scorer predict 1 + expl., this process": percentiles(here),
        "scorer predict 1 + expl., compute process": percentiles(there),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="prognos home with the model")
    parser.add_argument("--model", required=True, help="registered model (its champion is used)")
    parser.add_argument("--data", help="KIND:PATH readings to replay (default: see above)")
    parser.add_argument("--assets", type=int, default=100, help="simulated assets to replay")
    parser.add_argument("--warmup", type=int, default=30, help="untimed readings per asset first")
    parser.add_argument("--repeats", type=int, default=2000, help="timed single-asset calls")
    parser.add_argument("--batch", type=int, default=100, help="assets per batch call")
    parser.add_argument("--batch-repeats", type=int, default=100, help="timed batch calls")
    parser.add_argument("--output", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-process", action="store_true", help="skip the compute process")
    parser.add_argument(
        "--no-sequence-attribution",
        action="store_true",
        help="explain the sequence member as one term (no per-channel attribution)",
    )
    parser.add_argument(
        "--sequence-method",
        choices=["auto", "deeplift", "ig"],
        default="auto",
        help="the network's attribution: auto (DeepLift, IG for an LSTM) or forced, to compare",
    )
    args = parser.parse_args()

    import torch

    from prognos.ingestion.loading import load_champion
    from prognos.ingestion.predictor import Predictor
    from prognos.models import attribution

    if args.sequence_method != "auto":  # what SequenceModel.attributions dispatches on
        forced = args.sequence_method
        attribution.method_for = lambda net: forced

    console = Console()
    settings = get_settings(home=args.home)
    with console.status(f"Loading {args.model}@champion"):
        loaded = load_champion(settings, args.model)
    bundle = loaded.bundle
    attribute = None
    if args.no_sequence_attribution:
        attribute = [m for m in bundle.members if m != "sequence"]
    predictor = Predictor(
        bundle, model_name=loaded.name, model_version=loaded.version, attribute=attribute
    )  # in-memory state, as a one-worker service without Redis
    explainer = predictor.explainer
    methods = {"shap": "TreeSHAP"}
    net = getattr(bundle.members.get("sequence"), "net_", None)
    if net is not None:
        methods["channels"] = attribution.method_for(net)
    explained = ", ".join(
        f"{m} x {c:.2f} ({methods.get(explainer.attributed.get(m, ''), 'one term')})"
        for m, c in explainer.slopes.items()
    )
    frame, source, dropped = bench_readings(bundle.fleet, args.data, assets=args.assets)
    readings = records(frame)
    n_assets = frame[ASSET].nunique()
    console.print(
        f"model {loaded.name} version {loaded.version}: members {', '.join(bundle.members)}, "
        f"{len(predictor.feature_names)} features, window {bundle.window}; "
        f"explained (slope, attribution): {explained or 'nothing'}",
        soft_wrap=True,
    )
    console.print(
        f"replaying {len(readings):,} readings of {n_assets} assets from {source}"
        + (f" ({dropped} out-of-range rows dropped)" if dropped else "")
        + f"; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"torch threads {torch.get_num_threads()}",
        soft_wrap=True,
    )
    if n_assets < args.batch:
        console.print(f"[yellow]only {n_assets} assets: batches have {n_assets}[/]")
    with console.status("Warming up and timing"):
        results = measure(predictor, readings, args)
    if not args.no_process:
        with console.status("Timing the scorers (this process, compute process)"):
            results |= measure_scorers(settings, loaded, readings, args)

    table = Table(title=f"{loaded.name} v{loaded.version}: serving hot path in process (no HTTP)")
    for column in ("operation", "calls", "p50", "p95", "p99", "mean"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for name, r in results.items():
        times = (fmt(r[k]) for k in ("p50_us", "p95_us", "p99_us", "mean_us"))
        table.add_row(name, f"{int(r['n']):,}", *times)
    console.print(table)
    if args.output is not None:
        report = {
            "model": loaded.name,
            "version": loaded.version,
            "source": source,
            "assets": int(n_assets),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": torch.get_num_threads(),
            "sequence_method": args.sequence_method,
            "sequence_attribution": not args.no_sequence_attribution,
            "results": results,
        }
        args.output.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
