from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prognos.fleet import CMAPSS_COLUMNS, FleetSpec, SensorSpec, cmapss_spec


def read_cmapss(path: Path) -> pd.DataFrame:
    """Plain pandas read, independent of the loaders under test elsewhere."""
    spec = cmapss_spec()
    raw = pd.read_csv(path, sep=r"\s+", header=None, names=CMAPSS_COLUMNS)
    return raw.rename(columns=spec.rename_map())


@pytest.fixture(scope="session")
def fd001(cmapss_dir: Path) -> pd.DataFrame:
    return read_cmapss(cmapss_dir / "train_FD001.txt")


@pytest.fixture(scope="session")
def fd002(cmapss_dir: Path) -> pd.DataFrame:
    return read_cmapss(cmapss_dir / "train_FD002.txt")


def one_sensor_fleet() -> FleetSpec:
    return FleetSpec(name="tiny", sensors=[SensorSpec(name="s")])
