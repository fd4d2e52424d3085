"""The promotion gate and champion moves."""

from __future__ import annotations

import math

from prognos.registry.versions import GateConfig, gate

GOOD = {"f2": 0.92, "recall": 0.95, "rmse": 12.5}


def test_gate_passes_a_model_above_the_floors() -> None:
    decision = gate(GOOD, GateConfig(min_f2=0.9, min_recall=0.9, max_rmse=13.0), None)
    assert decision.passed and decision.reasons == []


def test_gate_refuses_each_floor_with_a_reason() -> None:
    decision = gate(
        {"f2": 0.5, "recall": 0.6, "rmse": 30.0},
        GateConfig(min_f2=0.9, min_recall=0.9, max_rmse=13.0),
        None,
    )
    assert not decision.passed
    text = " ".join(decision.reasons)
    assert "F2 0.500 below" in text and "recall 0.600 below" in text and "RMSE 30.00 above" in text


def test_gate_refuses_a_model_worse_than_the_champion() -> None:
    champion = {"f2": 0.95, "recall": 0.97, "rmse": 11.0}
    worse = gate(GOOD, GateConfig(), champion)
    assert not worse.passed
    assert any("worse than the champion" in r for r in worse.reasons)
    assert gate(champion, GateConfig(), champion).passed  # equal is not worse
    assert gate(GOOD, GateConfig(no_worse_than_champion=False), champion).passed


def test_gate_treats_nan_metrics_as_failing() -> None:
    assert not gate(
        {"f2": math.nan, "recall": 1.0, "rmse": 1.0}, GateConfig(min_f2=0.1), None
    ).passed


def test_connect_leaves_the_environment_alone(tmp_path: object, monkeypatch: object) -> None:
    """MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI; a second home must not see it."""
    import os
    from pathlib import Path

    from prognos.config import get_settings
    from prognos.registry.tracking import connect

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # type: ignore[attr-defined]
    first = get_settings(home=Path(str(tmp_path)) / "one")
    connect(first)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    second = get_settings(home=Path(str(tmp_path)) / "two")
    assert second.tracking_uri != first.tracking_uri
    assert str(Path(str(tmp_path)) / "two") in second.tracking_uri
