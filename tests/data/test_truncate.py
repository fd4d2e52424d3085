from __future__ import annotations

import pandas as pd

from prognos.data.labels import run_to_failure_labels, truncate_trajectories
from prognos.data.simulator import SimulatorConfig, simulate_fleet


def test_truncated_fleet_truth_matches_the_labels_of_the_kept_last_row() -> None:
    readings = simulate_fleet(SimulatorConfig(n_assets=12, seed=4)).readings
    cut, truth = truncate_trajectories(readings, seed=1, min_cycles=5, max_rul=100)
    labels = run_to_failure_labels(readings)
    last = cut.groupby("asset_id")["time"].idxmax()
    pd.testing.assert_series_equal(
        labels.loc[last.to_numpy(), "rul"].reset_index(drop=True),
        truth.reset_index(drop=True),
        check_names=False,
    )
    assert (truth <= 100).all() and (cut.groupby("asset_id").size() >= 5).all()
    assert len(cut) < len(readings)
