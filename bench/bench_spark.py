"""pandas against Spark (local mode) on simulated fleets: features and fleet scoring.

For each fleet size (``--assets``) the fleet is simulated once into a Parquet directory (the
default simulator: 120-350 cycles per life, about 235 readings per asset; asset ids made unique
across chunks) and a small model is trained once on 100 assets of the same design. Each job then
runs in a process of its own, as a user would run it:

- features / pandas: ``parquet:`` load, validation, pipeline fit and transform on the whole fleet,
  the matrix written to one Parquet file (what ``prognos features build`` does);
- features / spark: ``--engine spark``'s job: Spark reads the directory, the driver fits the
  pipeline (on at most ``spark_fit_assets`` assets), the quarantine job validates every group
  (its time is shown in the outcome), applyInPandas builds every asset's features, Spark writes
  them (``--sink noop`` computes them and writes nothing: the 100,000-asset matrix, ~67 GB, does
  not fit the disk here);
- score / pandas and score / spark: ``ModelBundle.predict`` on the whole fleet, one row per asset,
  written as CSV; the two CSVs are compared (``agree``: same alerts, RUL within 1e-9).

Measured: wall time of the whole process (imports and JVM start included) and of the job alone,
and the peak resident memory of the process tree (sampled every 0.2 s): the driver, the JVM and
the Python workers. A run whose tree passes ``--cap-gb`` is killed and reported as broken there
(the machine is shared: the cap keeps the others alive)::

    .venv/bin/python bench/bench_spark.py --assets 10000
    .venv/bin/python bench/bench_spark.py --assets 100000 --sink noop --jobs features-spark
    .venv/bin/python bench/bench_spark.py --assets 1000 --grouping   # per asset vs buckets
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

JOBS = ("features-pandas", "features-spark", "score-pandas", "score-spark")
_CHUNK = 5_000
_GB = 1024**3


# -- data ---------------------------------------------------------------------------------------


def fleet_dir(root: Path, assets: int) -> Path:
    """The simulated fleet as Parquet (written once, reused), with its spec and meta sidecars."""
    import pandas as pd
    import yaml

    from prognos.data.simulator import SimulatorConfig, simulate_fleet

    folder = root / f"fleet-{assets}"
    if (folder / "meta.yaml").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    spec = None
    for start in range(0, assets, _CHUNK):
        size = min(_CHUNK, assets - start)
        data = simulate_fleet(SimulatorConfig(n_assets=size, seed=1_000 + start // _CHUNK))
        readings = data.readings.assign(asset_id=data.readings["asset_id"] + start)
        readings.to_parquet(folder / f"part-{start // _CHUNK:05d}.parquet", index=False)
        spec = data.spec
        del data, readings
    assert spec is not None
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    (folder / "meta.yaml").write_text(yaml.safe_dump({"run_to_failure": True}))
    rows = sum(pd.read_parquet(f, columns=["time"]).shape[0] for f in folder.glob("*.parquet"))
    (folder / "rows.txt").write_text(str(rows))
    return folder


def model_file(root: Path) -> Path:
    """A small model (tree and sequence members, few rounds) trained on 100 assets of the same
    simulated design, pickled: what both engines score with."""
    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.training.config import TrainConfig
    from prognos.training.cv import cross_validate
    from prognos.training.final import fit_bundle
    from prognos.training.flow import prepare

    path = root / "model.pkl"
    if path.exists():
        return path
    config = TrainConfig.model_validate(
        {
            "folds": 3,
            "cuts_per_asset": 4,
            "members": {
                "xgboost": {"params": {"n_estimators": 100}},
                "sequence": {"params": {"max_epochs": 3, "hidden": 16}},
            },
        }
    )
    readings, labels, _, fleet = prepare(simulate_fleet(SimulatorConfig(n_assets=100)), config)
    cv = cross_validate(readings, labels, fleet, config)
    bundle = fit_bundle(readings, labels, fleet, config, cv)
    path.write_bytes(pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL))
    return path


# -- one job, in its own process ----------------------------------------------------------------


def child(job: str, folder: Path, out: Path, model: Path, sink: str, group: int) -> None:
    """Run one job and print its own time as JSON (the parent measures memory from outside)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.perf_counter()
    if job.endswith("pandas"):
        _pandas_job(job, folder, out, model)
    else:
        _spark_job(job, folder, out, model, sink, group)
    print(json.dumps({"job_s": time.perf_counter() - started}))


def _stage(name: str) -> None:
    """Tell the parent how far the job got (a run killed at the cap is reported there)."""
    print(json.dumps({"stage": name}), flush=True)


def _pandas_job(job: str, folder: Path, out: Path, model: Path) -> None:
    from prognos.cli._common import write_table
    from prognos.data.sources import load_source
    from prognos.data.validation import validate_readings

    _stage("loading")
    data = load_source(f"parquet:{folder}")
    _stage("validating")
    valid = validate_readings(data.readings, data.spec).valid
    del data
    if job == "features-pandas":
        from prognos.cli.features import build_feature_matrix

        _stage("building features")
        matrix = build_feature_matrix(_fleet(folder), valid, None).matrix
        _stage("writing")
        write_table(matrix, out, "parquet")
    else:
        bundle = pickle.loads(model.read_bytes())
        _stage("predicting")
        predictions = bundle.predict(valid.reset_index(drop=True))
        write_table(predictions.sort_values("asset_id").reset_index(drop=True), out, "csv")


def _fleet(folder: Path) -> Any:
    """A FleetData shell for build_feature_matrix (labels need the spec and run_to_failure)."""
    import pandas as pd

    from prognos.data.dataset import FleetData
    from prognos.fleet import FleetSpec

    spec = FleetSpec.from_yaml(folder / "spec.yaml")
    return FleetData(
        readings=pd.DataFrame(), spec=spec, source=f"parquet:{folder}", run_to_failure=True
    )


def _spark_job(job: str, folder: Path, out: Path, model: Path, sink: str, group: int) -> None:
    from prognos.cli._common import write_table
    from prognos.config import get_settings
    from prognos.spark import jobs
    from prognos.spark.quarantine import quarantine
    from prognos.spark.session import spark_session
    from prognos.spark.sources import read_readings

    settings = get_settings(spark_master="local[2]", spark_driver_memory="4g")
    spark = spark_session(settings, app_name=f"bench-{job}")
    readings = read_readings(spark, f"parquet:{folder}")
    n_assets = jobs.count_assets(readings)
    if job == "features-spark":
        _stage("fitting the pipeline on the driver")
        pipeline = jobs.fit_pipeline(
            readings, max_assets=settings.spark_fit_assets, n_assets=n_assets
        )
        _stage("validating: the quarantine")
        started = time.perf_counter()
        held = quarantine(spark, readings, assets_per_group=group, n_assets=n_assets)
        held.write.mode("overwrite").parquet(f"{out}.quarantine")
        print(json.dumps({"quarantine_s": time.perf_counter() - started}), flush=True)
        matrix = jobs.build_features(
            spark, readings, pipeline, assets_per_group=group, n_assets=n_assets
        )
        _stage("building and writing features")
        writer = matrix.write.mode("overwrite")
        if sink == "noop":
            writer.format("noop").save()
        else:
            writer.parquet(str(out))
    else:
        bundle = pickle.loads(model.read_bytes())
        scored = jobs.score_fleet(
            spark, readings, bundle, assets_per_group=group, n_assets=n_assets
        ).toPandas()
        write_table(scored.sort_values("asset_id").reset_index(drop=True), out, "csv")
    spark.stop()


# -- the parent: run, watch memory, tabulate ----------------------------------------------------


def watch(command: list[str], cap_gb: float, timeout_s: float) -> dict[str, Any]:
    """Run ``command``; sample its process tree's RSS until it ends, the cap or the timeout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peak = {"total": 0.0, "driver": 0.0, "jvm": 0.0, "workers": 0.0}
    outcome = "ok"
    while process.poll() is None:
        parts = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for proc in tree:
            try:
                rss = proc.memory_info().rss / _GB
                name = proc.name()
            except psutil.Error:
                continue
            key = "driver" if proc.pid == root.pid else "jvm" if "java" in name else "workers"
            parts[key] += rss
        total = sum(parts.values())
        if total > peak["total"]:
            peak = {"total": total, **parts}
        if total > cap_gb:
            outcome = f"killed at the {cap_gb:g} GB cap"
        elif time.perf_counter() - started > timeout_s:
            outcome = f"stopped after {timeout_s:g} s"
        if outcome != "ok":
            _kill(tree)
            break
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    job_s, stage, quarantine_s = None, None, None
    for line in stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            job_s = report.get("job_s", job_s)
            stage = report.get("stage", stage)
            quarantine_s = report.get("quarantine_s", quarantine_s)
    if outcome == "ok" and process.returncode != 0:
        error = [line for line in stderr.splitlines() if "Error" in line]
        outcome = (error[-1] if error else f"exit {process.returncode}").strip()[:90]
    if outcome != "ok" and stage is not None:
        outcome += f" while {stage}"
    return {
        "wall_s": wall,
        "job_s": job_s,
        "peak": peak,
        "outcome": outcome,
        "quarantine_s": quarantine_s,
    }


def _kill(tree: list[psutil.Process]) -> None:
    for proc in reversed(tree):  # children first: no orphaned JVM or worker
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)


def agree(pandas_csv: Path, spark_csv: Path) -> str:
    import numpy as np
    import pandas as pd

    if not (pandas_csv.exists() and spark_csv.exists()):
        return "-"
    a, b = pd.read_csv(pandas_csv), pd.read_csv(spark_csv)
    same = (
        len(a) == len(b)
        and (a["asset_id"].to_numpy() == b["asset_id"].to_numpy()).all()
        and (a["alert"].to_numpy() == b["alert"].to_numpy()).all()
        and np.allclose(a["rul"], b["rul"], rtol=1e-9, atol=0)
    )
    return "yes" if same else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, action="append", help="fleet size (repeatable)")
    parser.add_argument("--jobs", default=",".join(JOBS), help="comma-separated, of " + str(JOBS))
    parser.add_argument("--data", type=Path, default=Path("/tmp/prognos-bench-spark"))
    parser.add_argument("--sink", choices=("parquet", "noop"), default="parquet")
    parser.add_argument("--cap-gb", type=float, default=12.0)
    parser.add_argument("--timeout", type=float, default=1500.0)
    parser.add_argument("--assets-per-group", type=int, default=250)
    parser.add_argument("--grouping", action="store_true", help="Spark features: 1 vs N per group")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job, folder, out, model, sink, group = args.child
        child(job, Path(folder), Path(out), Path(model), sink, int(group))
        return
    console = Console(width=200)
    args.data.mkdir(parents=True, exist_ok=True)
    model = model_file(args.data)
    table = Table(title=f"pandas vs Spark local[2] (cap {args.cap_gb:g} GB, sink {args.sink})")
    for column in ("assets", "readings", "job", "engine", "wall s", "job s", "peak GB"):
        table.add_column(column, justify="right")
    table.add_column("driver / JVM / workers GB", justify="right")
    table.add_column("outcome")
    for assets in args.assets or [10_000]:
        folder = fleet_dir(args.data, assets)
        rows = int((folder / "rows.txt").read_text())
        runs = [(j, args.assets_per_group) for j in args.jobs.split(",")]
        if args.grouping:
            runs = [("features-spark", 1), ("features-spark", args.assets_per_group)]
        for job, group in runs:
            suffix = ".csv" if job.startswith("score") else ".parquet"
            out = args.data / f"out-{assets}-{job}{suffix}"
            command = [sys.executable, __file__, "--child", job, str(folder), str(out)]
            command += [str(model), args.sink, str(group)]
            console.print(f"[dim]{assets} assets: {job} (group {group})[/]")
            result = watch(command, args.cap_gb, args.timeout)
            if result["outcome"] != "ok" and out.is_dir():  # how far Spark got: bytes written
                written = sum(f.stat().st_size for f in out.rglob("*.parquet")) / _GB
                result["outcome"] += f", {written:.1f} GB of features written"
            if result["quarantine_s"] is not None:
                result["outcome"] += f" (quarantine job {result['quarantine_s']:.0f} s)"
            peak = result["peak"]
            engine = job.split("-")[1] + (f" ({group}/group)" if args.grouping else "")
            table.add_row(
                f"{assets:,}",
                f"{rows:,}",
                job.split("-")[0],
                engine,
                f"{result['wall_s']:.0f}",
                "-" if result["job_s"] is None else f"{result['job_s']:.0f}",
                f"{peak['total']:.2f}",
                f"{peak['driver']:.2f} / {peak['jvm']:.2f} / {peak['workers']:.2f}",
                result["outcome"],
            )
            console.print(
                f"  wall {result['wall_s']:.0f} s, peak {peak['total']:.2f} GB: {result['outcome']}"
            )
            if job.startswith("features") and out.exists():
                if out.is_dir():  # GBs: keep the shared disk free
                    shutil.rmtree(out)
                else:
                    out.unlink()
            shutil.rmtree(f"{out}.quarantine", ignore_errors=True)
        a, b = (args.data / f"out-{assets}-score-{e}.csv" for e in ("pandas", "spark"))
        console.print(f"{assets:,} assets: pandas and Spark predictions agree: {agree(a, b)}")
    console.print(table)


if __name__ == "__main__":
    main()
