"""The EDA page: self-contained, every section present, and its numbers those of the data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from prognos.data.inspect import inspect_fleet
from prognos.data.sources import load_source
from prognos.reports.eda import STEPS, build_eda
from tests.helpers.cli import assert_one_line_error, run

SECTIONS = ("fleet", "sensors", "correlations", "regimes", "dead", "health", "trends")


def assert_self_contained(html: str) -> None:
    """No attribute loads or links anything outside the file."""
    outside = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?!#|data:)([^"'\s>]+)""", html)
    assert outside == [], outside
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "@import" not in html


def test_a_simulated_fleet_with_a_dead_and_a_stuck_sensor() -> None:
    data = load_source("sim:n_assets=12,seed=5")
    readings = data.readings
    readings["sensor_5"] = readings["sensor_5"].median()  # dead across the fleet
    first = readings.index[readings["asset_id"] == readings["asset_id"].iloc[0]]
    # Stuck on one asset for 30 readings at a plausible value.
    readings.loc[first[10:40], "sensor_7"] = readings.loc[first[10], "sensor_7"]
    seen: list[str] = []
    page, facts = build_eda(data, progress=seen.append)
    html = page.render()

    assert seen == list(STEPS)
    assert_self_contained(html)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 6

    inspection = inspect_fleet(data)
    assert facts.n_assets == inspection.n_assets == 12
    assert f"{inspection.n_rows:,} readings of 12 assets" in html
    assert facts.constant_columns == inspection.constant_columns == ["sensor_5"]
    assert "sensor_5" in facts.dropped_sensors and "sensor_5" not in facts.kept_sensors
    assert facts.stuck_sensors == ["sensor_7"]
    assert "sensor_7 looks stuck" in html
    assert facts.target == "RUL (cycles)" and facts.target_rows == facts.n_valid_rows
    assert facts.n_regimes == inspection.n_regimes
    regime_rows = re.search(r"regime centres and readings</caption>(.*?)</table>", html, re.S)
    assert regime_rows is not None
    assert regime_rows.group(1).count("<tr>") == inspection.n_regimes + 1  # + the header
    # The index rises with wear, so it falls with RUL; the page prints the figure.
    assert facts.health_index_corr is not None and facts.health_index_corr < 0
    assert f"{facts.health_index_corr:+.3f}" in html


def test_telemetry_without_outcomes_is_shown_against_age() -> None:
    data = load_source("sim:n_assets=6,seed=2,mode=telemetry")
    data.events = None  # a fleet that stops before failure with no event log
    page, facts = build_eda(data)
    html = page.render()
    assert facts.target.startswith("age")
    assert "no RUL is known" in html
    assert_self_contained(html)


def test_telemetry_with_an_event_log_uses_the_time_to_failure() -> None:
    data = load_source("sim:n_assets=6,seed=2,mode=telemetry")
    assert data.events is not None
    page, facts = build_eda(data)
    assert facts.target.startswith("time to failure")
    assert 0 < facts.target_rows < facts.n_valid_rows
    assert "censored" in page.render()


@pytest.mark.slow
def test_cmapss_fd001(cmapss_dir: Path, tmp_path: Path) -> None:
    data = load_source(f"cmapss:{cmapss_dir / 'train_FD001.txt'}")
    page, facts = build_eda(data)
    path = page.write(tmp_path / "fd001.html")
    html = path.read_text()
    assert_self_contained(html)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert facts.n_assets == 100 and facts.n_rows == 20_631
    assert facts.n_regimes == 1
    # The dead channels the inspection finds (C-MAPSS FD001's well-known flat ones).
    dead = ["setting_3", "sensor_1", "sensor_5", "sensor_10", "sensor_16", "sensor_18", "sensor_19"]
    assert facts.constant_columns == dead
    assert "setting_3, sensor_1, sensor_5, sensor_10, sensor_16, sensor_18, sensor_19" in html
    lengths = data.readings.groupby("asset_id").size()
    assert f"min {lengths.min()}, median {np.median(lengths):g}" in html
    assert facts.health_index_corr is not None and facts.health_index_corr < -0.6
    assert path.stat().st_size < 2_000_000


def test_cli_eda(tmp_path: Path) -> None:
    target = tmp_path / "eda.html"
    result = run("--home", tmp_path, "report", "eda", "sim:n_assets=8,seed=4", "--output", target)
    assert result.exit_code == 0, result.output
    assert "8 assets" in result.stdout and re.search(r"wrote \d+ KiB", result.stdout)
    assert_self_contained(target.read_text())
    default = run("--home", tmp_path, "report", "eda", "sim:n_assets=8,seed=4")
    assert default.exit_code == 0, default.output
    assert (tmp_path / "reports" / "eda" / "sim_n_assets_8_seed_4.html").exists()
    missing = run("--home", tmp_path, "report", "eda", "csv:/nonexistent/file.csv")
    assert_one_line_error(missing)
