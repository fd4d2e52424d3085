"""The ``prognos`` CLI end to end through typer's CliRunner; every test has its own home."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from prognos.data.sources import load_source
from prognos.fleet import ASSET, TIME
from tests.helpers.cli import assert_one_line_error, run


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# A tiny fleet with declared ranges, so that out-of-range values exist.
SPEC = {
    "name": "tiny",
    "sensors": [
        {"name": "temp", "min": 0.0, "max": 100.0},
        {"name": "pres", "min": 0.0, "max": 50.0},
    ],
}


def tiny_readings(n_assets: int = 2, n_cycles: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            ASSET: np.repeat(np.arange(1, n_assets + 1), n_cycles),
            TIME: np.tile(np.arange(1, n_cycles + 1), n_assets),
        }
    )
    frame["temp"] = 50 + rng.normal(0, 1, len(frame))
    frame["pres"] = 20 + rng.normal(0, 1, len(frame))
    return frame


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


# ------------------------------------------------------------------------------------- simulate


def test_simulate_writes_files_that_load_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run("--home", home, "simulate", "--assets", "6", "--seed", "3")
    assert result.exit_code == 0, result.output
    target = home / "data" / "simulated.csv"
    assert {"data/simulated.csv", "data/simulated.spec.yaml", "data/simulated.meta.yaml"} <= (
        files_under(home)
    )
    data = load_source(f"csv:{target}")
    assert data.n_assets == 6
    assert data.run_to_failure
    assert f"{len(data.readings):,}" in result.stdout
    assert "regimes" in result.stdout and "sensors" in result.stdout
    assert str(target) in result.stdout


def test_simulate_telemetry_to_parquet_with_config(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(yaml.safe_dump({"n_assets": 99, "n_sensors": 5, "n_fault_sensors": 2}))
    out = tmp_path / "fleet"
    result = run(
        "simulate",
        "--config",
        config,
        "--assets",
        "4",
        "--mode",
        "telemetry",
        "--output",
        f"parquet:{out}/",
        "--home",
        tmp_path / "home",
    )
    assert result.exit_code == 0, result.output
    data = load_source(f"parquet:{out}")
    assert data.n_assets == 4  # the option overrides the config
    assert len(data.spec.sensors) == 5  # the rest comes from the config
    assert data.events is not None
    assert "failures" in result.stdout and "censored lives" in result.stdout
    assert str(out / "events.csv") in result.stdout
    assert not (tmp_path / "home").exists()  # nothing written there: no home created


# -------------------------------------------------------------------------------------- inspect


def test_inspect_cmapss_fd001(tmp_path: Path, cmapss_dir: Path) -> None:
    source = f"cmapss:{cmapss_dir / 'train_FD001.txt'}"
    result = run("--home", tmp_path, "data", "inspect", source)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("assets" in line and "100" in line for line in lines)
    assert any(line.split("│")[1:2] == [" regimes          "] for line in lines), result.stdout
    assert "Operating regimes (1)" in result.stdout
    assert "constant columns" in result.stdout and "sensor_1" in result.stdout

    as_json = run("--home", tmp_path, "data", "inspect", source, "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["n_assets"] == 100
    assert report["n_regimes"] == 1
    assert report["shape"] == "run_to_failure"
    assert files_under(tmp_path) == set()  # inspecting writes nothing


# ------------------------------------------------------------------------------------- validate


def test_validate_dirty_csv_quarantines_with_reasons(tmp_path: Path, spec_file: Path) -> None:
    frame = tiny_readings()
    frame.loc[3, "temp"] = np.nan  # missing
    frame.loc[15, "pres"] = 500.0  # out of range
    frame = pd.concat([frame.iloc[:8], frame.iloc[[7]], frame.iloc[8:]], ignore_index=True)
    csv = tmp_path / "readings.csv"
    frame.to_csv(csv, index=False)
    home = tmp_path / "home"

    result = run("data", "validate", f"csv:{csv}", "--spec", spec_file, "--home", home)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "25 rows: 22 valid, 3 quarantined" in out
    for rule in ("missing", "duplicate", "out_of_range"):
        row = next(line for line in out.splitlines() if f" {rule} " in line)
        assert "│    1 │" in row, row
    assert "exact duplicate" in out and "pres=500 above max 50" in out
    quarantine = pd.read_csv(home / "quarantine" / "readings.csv")
    assert len(quarantine) == 3
    assert sorted(quarantine["reason"].str.split(":").str[0]) == [
        "duplicate",
        "missing",
        "out_of_range",
    ]


def test_validate_custom_quarantine_path_and_clean_data(tmp_path: Path, spec_file: Path) -> None:
    csv = tmp_path / "clean.csv"
    tiny_readings().to_csv(csv, index=False)
    target = tmp_path / "q" / "bad.csv"
    result = run("data", "validate", f"csv:{csv}", "--spec", spec_file, "--quarantine", target)
    assert result.exit_code == 0, result.output
    assert "0 quarantined" in result.stdout
    assert not target.exists()  # nothing to quarantine, nothing written


def test_validate_nothing_valid_exits_1(tmp_path: Path, spec_file: Path) -> None:
    frame = tiny_readings()
    frame["pres"] = np.nan
    csv = tmp_path / "broken.csv"
    frame.to_csv(csv, index=False)
    target = tmp_path / "q.csv"
    result = run(
        "--home", tmp_path, "data", "validate", f"csv:{csv}", "--spec", spec_file,
        "--quarantine", target,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "0 valid" in result.stdout and "no valid rows remain" in result.stdout
    assert len(pd.read_csv(target)) == len(frame)


# ------------------------------------------------------------------------------------- features


def test_features_build_writes_parquet_with_labels(tmp_path: Path) -> None:
    source = "sim:n_assets=4,seed=2,n_sensors=4,n_fault_sensors=2"
    result = run("--home", tmp_path, "features", "build", source)
    assert result.exit_code == 0, result.output
    path = (
        tmp_path / "data" / "sim_n_assets_4_seed_2_n_sensors_4_n_fault_sensors_2.features.parquet"
    )
    matrix = pd.read_parquet(path)
    readings = load_source(source).readings
    assert len(matrix) == len(readings)
    assert list(matrix.columns[:2]) == [ASSET, TIME]
    assert {"rul", "rul_capped", "failure_within_h"} <= set(matrix.columns)
    assert "health_index__value" in matrix.columns
    n_features = len(matrix.columns) - 2 - 3
    assert f"{len(readings):,} rows x {n_features} features" in result.stdout
    assert "regimes" in result.stdout and "sensors dropped" in result.stdout


def test_features_build_csv_with_feature_spec_and_quarantine(
    tmp_path: Path, spec_file: Path
) -> None:
    frame = tiny_readings(n_assets=3, n_cycles=15)
    frame.loc[4, "temp"] = -1.0  # out of range: quarantined, the rest goes on
    csv = tmp_path / "fleet.csv"
    frame.to_csv(csv, index=False)
    features = tmp_path / "features.yaml"
    features.write_text(
        yaml.safe_dump({"windows": [3], "aggregations": ["mean"], "lags": [1], "ewma_spans": [2]})
    )
    out = tmp_path / "out" / "feat.csv"
    result = run(
        "--home", tmp_path / "home", "features", "build", f"csv:{csv}", "--spec", spec_file,
        "--features", features, "--output", f"csv:{out}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    matrix = pd.read_csv(out)
    assert len(matrix) == len(frame) - 1
    assert list(matrix.columns[:2]) == [ASSET, TIME]
    assert "temp__mean_3" in matrix.columns and "temp__mean_5" not in matrix.columns
    assert "1 quarantined" in result.stdout
    assert (tmp_path / "home" / "quarantine" / "fleet.csv").exists()


def test_features_build_without_labels_says_so(tmp_path: Path, cmapss_dir: Path) -> None:
    source = f"cmapss:{cmapss_dir / 'test_FD001.txt'}"
    out = tmp_path / "test.parquet"
    result = run("--home", tmp_path, "features", "build", source, "-o", f"parquet:{out}")
    assert result.exit_code == 0, result.output
    assert "labels skipped" in result.stdout
    assert not {"rul", "failure_within_h"} & set(pd.read_parquet(out, columns=None).columns)


# --------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["data", "inspect", "nope:x"], ["unknown data source kind 'nope'"]),
        (["data", "inspect", "just/a/path.csv"], ["has no KIND: prefix"]),
        (["data", "validate", "csv:{tmp}/missing.csv"], ["no such file", "missing.csv"]),
        (["data", "inspect", "cmapss:{tmp}/missing.txt"], ["no such file"]),
        (["features", "build", "sim:n_assets=2", "-o", "cmapss:{tmp}/x"], ["not cmapss:"]),
        (["data", "inspect", "sim:n_assets=0"], ["n_assets: Input should be greater than 0"]),
        (["simulate", "--assets", "0"], ["invalid SimulatorConfig", "n_assets"]),
        (["simulate", "--config", "{tmp}/nope.yaml"], ["cannot read", "nope.yaml"]),
        (["data", "inspect", "csv:{tmp}/x.csv", "--spec", "{tmp}/bad.yaml"], ["bad.yaml"]),
    ],
)
def test_errors_are_one_red_line_with_exit_code_2(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\nsensors: []\n")
    (tmp_path / "x.csv").write_text("asset_id,time,s\n1,1,0.5\n")
    result = run("--home", tmp_path / "home", *[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "home").exists()


# ----------------------------------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_trains_registers_and_predicts(tmp_path: Path) -> None:
    result = run("demo", "--assets", "24", "--seed", "2", "--home", tmp_path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "registered model demo version 1 (champion)" in out
    assert "Riskiest assets" in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    assert (tmp_path / "mlflow.db").exists()
    # The live step: streamed over the in-process queue, the fault told from aging.
    assert "transport: in-process queue" in out
    assert "readings 1-59 (no fault)" in out
    assert "shifted sensor stands out: detected" in out


def test_demo_end_to_end(tmp_path: Path) -> None:
    result = run("demo", "--assets", "12", "--seed", "1", "--no-train", "--home", tmp_path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "caught 4 of 4 injected rows" in out
    assert "parity: last online row vs offline row: max |difference| = 0" in out
    assert "Most degraded assets (top 10 by latest health index)" in out
    summary = out[out.index("Most degraded assets") :]
    assert sum(1 for line in summary.splitlines() if line.startswith("│")) == 10
    assert "next steps" in out and "prognos features build" in out
    assert {
        "data/demo.parquet",
        "data/demo-dirty.csv",
        "data/demo.features.parquet",
        "quarantine/demo-dirty.csv",
    } <= files_under(tmp_path)
    reasons = pd.read_csv(tmp_path / "quarantine" / "demo-dirty.csv")["reason"]
    assert sorted(r.split(":")[0] for r in reasons) == [
        "duplicate",
        "missing",
        "out_of_order",
        "out_of_range",
    ]


# ---------------------------------------------------------------------------------- settings etc.


def test_two_homes_never_share_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("--home", a, "simulate", "--assets", "2").exit_code == 0
    assert run("simulate", "--assets", "3", env={"PROGNOS_HOME": str(b)}).exit_code == 0
    assert run("features", "build", f"csv:{b}/data/simulated.csv", "--home", b).exit_code == 0
    assert files_under(a) == {
        "data/simulated.csv",
        "data/simulated.spec.yaml",
        "data/simulated.meta.yaml",
    }
    assert files_under(b) == files_under(a) | {"data/simulated.features.parquet"}
    assert load_source(f"csv:{a}/data/simulated.csv").n_assets == 2
    assert load_source(f"csv:{b}/data/simulated.csv").n_assets == 3
    assert list(work.iterdir()) == []  # nothing leaked into the working directory


def test_home_after_the_command_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert run("--home", first, "simulate", "-n", "2", "--home", second).exit_code == 0
    assert not first.exists()
    assert (second / "data" / "simulated.csv").exists()


def test_version_and_help_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from prognos import __version__

    for args in (["--version"], ["version"]):
        result = run(*args)
        assert result.exit_code == 0
        assert result.stdout.strip() == f"prognos {__version__}"
    help_result = run("--help")
    assert help_result.exit_code == 0
    for command in ("simulate", "data", "features", "demo", "version"):
        assert command in help_result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["simulate"], "Number of assets [default: 100]."),
        (["keys", "create"], "Requests per minute [default: the service's default]."),
        (["stream", "publish"], "mqtt://[user:pass@]host[:port]"),
    ],
)
def test_help_shows_the_bracketed_defaults(command: list[str], shown: str) -> None:
    """Rich reads an unescaped ``[default: ...]`` as a markup tag and drops it from the help."""
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert shown in result.stdout


def test_no_help_text_loses_a_bracket_to_rich_markup() -> None:
    """Every help text renders as written: an unescaped ``[word...]`` would vanish (see above)."""
    import typer
    from rich.markup import render

    from prognos.cli import app

    def texts(command: Any, path: str) -> Iterator[tuple[str, str]]:
        yield path, command.help or ""
        for param in command.params:
            yield f"{path} {param.name}", getattr(param, "help", None) or ""
        for name, sub in getattr(command, "commands", {}).items():
            yield from texts(sub, f"{path} {name}")

    lost = {
        where: text
        for where, text in texts(typer.main.get_command(app), "prognos")
        if render(text).plain != text.replace("\\[", "[")
    }
    assert not lost
