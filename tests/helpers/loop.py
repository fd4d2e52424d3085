"""A private copy of the ``trained`` home (its registry may then be changed) and a second
registered version of the tiny model, for the retraining loop's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from prognos.config import Settings, get_settings
from prognos.registry import versions
from prognos.registry.tracking import connect
from tests.helpers.trained import Trained


def private_home(trained: Trained, home: Path, **overrides: object) -> Settings:
    """Settings on a copy of the session model's registry: aliases and versions set here leave
    the shared home alone (artifacts stay where they are, read only)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(trained.home / "mlflow.db", home / "mlflow.db")
    return get_settings(home=home, **overrides)


def register_again(settings: Settings, name: str) -> int:
    """A new version of ``name`` made from its champion's run (the same model): a challenger
    whose predictions the tests choose."""
    client = connect(settings)
    champion = versions.champion(client, name)
    assert champion is not None
    source = client.get_model_version(name, str(champion.version)).source
    created = client.create_model_version(name, source, champion.run_id)
    return int(created.version)
