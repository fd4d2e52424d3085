"""Loading a pickled bundle: a model from before the log-odds stack is refused by name."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prognos.errors import ConfigError
from prognos.models.bundle import ModelBundle
from prognos.registry.pyfunc import load_bundle


def _bundle(post: Any) -> ModelBundle:
    return ModelBundle(
        fleet=None,  # type: ignore[arg-type]
        pipeline=None,  # type: ignore[arg-type]
        window=50,
        horizon=30,
        rul_cap=125.0,
        members={},
        post=post,
    )


def test_a_bundle_from_before_the_log_odds_stack_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.pkl"
    # What an earlier prognos pickled: weights on probabilities and a separate calibrator.
    old.write_bytes(pickle.dumps(_bundle(SimpleNamespace(proba_weights={}, calibrator=None))))
    with pytest.raises(ConfigError, match=r"earlier prognos.*retrain"):
        load_bundle(old)
    current = tmp_path / "current.pkl"
    current.write_bytes(pickle.dumps(_bundle(SimpleNamespace(stack=object()))))
    assert isinstance(load_bundle(current), ModelBundle)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"not": "a bundle"}))
    with pytest.raises(TypeError, match="ModelBundle"):
        load_bundle(other)
