"""``--engine spark`` of ``prognos features build`` and ``prognos predict``: the same jobs on
Spark (:mod:`prognos.spark`), for fleets whose history outgrows one machine's memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from prognos.cli._common import CliState, fmt_int, path_line, source_stem
from prognos.errors import DataSourceError, EngineError

if TYPE_CHECKING:
    import pandas as pd

    from prognos.features import FeatureSpec
    from prognos.models.bundle import ModelBundle


T = TypeVar("T")


class Engine(StrEnum):
    pandas = "pandas"
    spark = "spark"


EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="pandas (in memory) or spark (PROGNOS_SPARK_MASTER, else local[N]; needs the "
        "'spark' extra and Java 17).",
    ),
]


def spark_features(
    state: CliState,
    source: str,
    spec_file: Path | None,
    feature_spec: FeatureSpec | None,
    output: str | None,
    quarantine: Path | None = None,
) -> None:
    """Fit the pipeline on the driver, build every asset's features on Spark, write Parquet;
    quarantined rows (with reasons) go to a Parquet directory beside it, as counts say."""
    from prognos.data.sources import parse_source
    from prognos.fleet import FleetSpec
    from prognos.spark import jobs
    from prognos.spark.quarantine import write_features
    from prognos.spark.session import spark_session
    from prognos.spark.sources import read_readings

    settings = state.settings
    target = output or f"parquet:{settings.data_dir / f'{source_stem(source)}.features'}"
    kind, path = parse_source(target)
    if kind != "parquet":
        raise DataSourceError(
            f"--engine spark writes the feature matrix as a Parquet directory (parquet:DIR), "
            f"not {kind}:"
        )
    spec = FleetSpec.from_yaml(spec_file) if spec_file is not None else None
    started = time.perf_counter()
    spark = spark_session(settings)
    with state.err.status(f"Fitting the feature pipeline on {escape(source)}"):
        readings = _run(lambda: read_readings(spark, source, spec))
        n_assets = _run(lambda: jobs.count_assets(readings))
        pipeline = _run(
            lambda: jobs.fit_pipeline(
                readings, feature_spec, max_assets=settings.spark_fit_assets, n_assets=n_assets
            )
        )
    held = str(quarantine) if quarantine is not None else f"{path.rstrip('/')}.quarantine"
    with state.err.status("Validating and building features on Spark"):
        written = _run(
            lambda: write_features(
                spark,
                readings,
                pipeline,
                path,
                held,
                assets_per_group=settings.spark_assets_per_group,
                n_assets=n_assets,
            )
        )
    line = (
        f"validated {fmt_int(written.total_rows)} rows: {fmt_int(written.valid_rows)} valid, "
        f"{fmt_int(written.quarantined_rows)} quarantined"
    )
    if written.quarantine_path is not None:
        rules = ", ".join(f"{rule} {fmt_int(n)}" for rule, n in written.by_rule.items())
        path_line(state.out, f"{line} ({rules}) ->", written.quarantine_path)
    else:
        state.out.print(line)
    fitted_on = "every asset" if n_assets <= settings.spark_fit_assets else "a sample"
    master = spark.conf.get("spark.master", "?") or "?"
    state.out.print(
        f"{fmt_int(n_assets)} assets, {len(pipeline.feature_names_out_)} features "
        f"(pipeline fitted on {fitted_on}), {pipeline.regimes_.n_regimes} regimes, "
        f"labels: {'yes' if readings.run_to_failure else 'none'}, "
        f"{time.perf_counter() - started:.1f} s on {escape(master)}"
    )
    path_line(state.out, "wrote", path)


def spark_predict(
    state: CliState, source: str, spec_file: Path | None, bundle: ModelBundle
) -> pd.DataFrame:
    """``ModelBundle.predict`` per asset group on Spark; the predictions (one row per asset)
    collected to the driver, sorted by asset, as a pandas frame."""
    from prognos.fleet import FleetSpec
    from prognos.spark import jobs
    from prognos.spark.session import spark_session
    from prognos.spark.sources import read_readings

    settings = state.settings
    spec = FleetSpec.from_yaml(spec_file) if spec_file is not None else None
    spark = spark_session(settings)
    with state.err.status(f"Scoring {escape(source)} on Spark"):
        readings = _run(lambda: read_readings(spark, source, spec))
        scored = jobs.score_fleet(
            spark,
            readings,
            bundle,
            assets_per_group=settings.spark_assets_per_group,
            n_assets=_run(lambda: jobs.count_assets(readings)),
        )
        frame = _run(scored.toPandas)
    return frame.sort_values("asset_id", kind="mergesort").reset_index(drop=True)


def _run(job: Callable[[], T]) -> T:
    """Run a Spark action; a failed job becomes an EngineError naming the error that failed it."""
    from prognos.errors import PrognosError
    from prognos.spark.session import job_error

    try:
        return job()
    except PrognosError:
        raise
    except Exception as exc:  # Py4J and PySpark errors share no base class worth naming
        raise EngineError(f"the Spark job failed: {job_error(exc)}") from exc
