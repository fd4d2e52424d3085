"""``--engine spark`` refuses what it cannot do before starting a JVM (no Spark needed here)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import assert_one_line_error, run


def test_spark_features_are_written_to_a_parquet_directory(tmp_path: Path) -> None:
    result = run(
        "--home", tmp_path, "features", "build", "sim:n_assets=2", "--engine", "spark",
        "-o", f"csv:{tmp_path / 'f.csv'}",
    )  # fmt: skip
    assert_one_line_error(result, "Parquet directory", "not csv:")


def test_spark_features_take_no_event_log(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("asset_id,time,event\n")
    result = run(
        "--home", tmp_path, "features", "build", "sim:n_assets=2", "--engine", "spark",
        "--events", events,
    )  # fmt: skip
    assert_one_line_error(result, "--engine spark takes no --events")


def test_an_unknown_engine_is_refused(tmp_path: Path) -> None:
    result = run("--home", tmp_path, "features", "build", "sim:n_assets=2", "--engine", "dask")
    assert result.exit_code == 2
    assert "dask" in result.output
