"""The small model trained and registered once per session (the ``trained`` fixture in
``tests/conftest.py``), for every test that serves, ingests or monitors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prognos.config import Settings, get_settings
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.monitoring.build import profile_from_training
from prognos.training.config import TrainConfig
from prognos.training.flow import train

FAST = {
    "folds": 3,
    "cuts_per_asset": 4,
    # Both members in both outputs, whatever 24 assets say: the tests that serve, explain or
    # shadow this model need a blend of two members.
    "select_members": False,
    "members": {
        "xgboost": {"params": {"n_estimators": 60}},
        "sequence": {"params": {"max_epochs": 3, "hidden": 16, "pool": 3}},
        "forest": {"enabled": False},
    },
}


@dataclass
class Trained:
    home: Path
    name: str
    fleet: pd.DataFrame  # readings of assets the model never saw

    def settings(self, **overrides: object) -> Settings:
        return get_settings(home=self.home, **overrides)


def train_tiny(home: Path) -> Trained:
    """Train the tiny model ``"tiny"`` on 24 simulated assets into ``home``."""
    data = simulate_fleet(SimulatorConfig(n_assets=24, seed=11))
    settings = get_settings(home=home)
    config = TrainConfig.model_validate(FAST)
    train(data, config, settings, name="tiny", reference=profile_from_training)
    unseen = simulate_fleet(SimulatorConfig(n_assets=6, seed=12)).readings
    return Trained(home=home, name="tiny", fleet=unseen)
