"""Prefect's test harness, once per session: its temporary server takes ~20 s to start, and its
SQLite store locks under concurrent writers (Prefect issues #16397, #18934), so the flows that use
it run one after another in this one server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from prognos.data.sinks import write_source
from prognos.data.sources import load_source
from prognos.storage import Database


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's settings for the tests (a private home, no analytics, no UI). Prefect reads
    them when it is first imported: every test that imports it asks for this first."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
        mp.setenv("PREFECT_SERVER_UI_ENABLED", "false")
        yield


@pytest.fixture(scope="session")
def prefect_server(prefect_env: None) -> Iterator[None]:
    """Flows called inside run against the harness's temporary server."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def flows_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, migrated SQLite database that every flow and command of the test uses."""
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    monkeypatch.setenv("PROGNOS_DATABASE_URL", url)
    monkeypatch.delenv("PROGNOS_FLEET", raising=False)
    return url


@pytest.fixture
def broken_csv(tmp_path: Path) -> Path:
    """Three simulated assets as CSV (with their spec sidecar), four rows broken: a non-number,
    a value out of range, an exact duplicate, and an asset id the service could not serve."""
    path = tmp_path / "data" / "rig.csv"
    write_source(load_source("sim:n_assets=3,seed=1"), f"csv:{path}")
    frame = pd.read_csv(path, dtype={"asset_id": str, "sensor_2": object})
    frame.loc[3, "sensor_2"] = "oops"
    frame.loc[5, "sensor_4"] = 1e9
    frame.loc[frame["asset_id"] == "3", "asset_id"] = "bad id"  # a space: not an id
    frame = pd.concat([frame.iloc[:11], frame.iloc[[10]], frame.iloc[11:]], ignore_index=True)
    frame.to_csv(path, index=False)
    return path
