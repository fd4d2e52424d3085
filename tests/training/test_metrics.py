"""Metric functions against values computed by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from prognos.training.metrics import (
    classification_metrics,
    cost_per_asset,
    expected_cost,
    interval_coverage,
    mean_interval_width,
    phm08_score,
    phm08_score_mean,
    recall_gap_check,
    regression_metrics,
    sliced_metrics,
)

E1 = math.e - 1.0


def test_phm08_by_hand() -> None:
    # d = pred - true = [-13, 10, 0]:
    #   d = -13 (early) -> exp(13/13) - 1 = e - 1
    #   d = +10 (late)  -> exp(10/10) - 1 = e - 1
    #   d =   0         -> exp(0) - 1     = 0
    # sum = 2(e - 1) = 3.43656...
    y_true = [50.0, 50.0, 50.0]
    y_pred = [37.0, 60.0, 50.0]
    assert phm08_score(y_true, y_pred) == pytest.approx(2 * E1)
    assert phm08_score_mean(y_true, y_pred) == pytest.approx(2 * E1 / 3)


def test_phm08_penalises_late_more_than_early() -> None:
    assert phm08_score([50.0], [60.0]) > phm08_score([50.0], [40.0])


def test_regression_metrics_by_hand() -> None:
    # d = [-13, 10, 0]: RMSE = sqrt((169 + 100 + 0) / 3), MAE = 23 / 3
    m = regression_metrics([50.0, 50.0, 50.0], [37.0, 60.0, 50.0])
    assert m["rmse"] == pytest.approx(math.sqrt(269 / 3))
    assert m["mae"] == pytest.approx(23 / 3)
    assert m["phm08"] == pytest.approx(2 * E1)
    assert m["phm08_mean"] == pytest.approx(2 * E1 / 3)


def test_classification_metrics_by_hand() -> None:
    # positives 0.9 0.8 0.7 | 0.2; negatives 0.6 0.55 | 0.4 0.3 0.1 0.05; threshold 0.5
    # -> tp=3, fn=1, fp=2, tn=4
    # precision 3/5, recall 3/4, F1 = 2tp/(2tp+fn+fp) = 6/9, F2 = 5tp/(5tp+4fn+fp) = 15/21
    # ROC AUC: pairs (pos > neg): 3 positives beat all 6 (18) + 0.2 beats 0.1, 0.05 (2) = 20/24
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.55, 0.4, 0.3, 0.1, 0.05])
    m = classification_metrics(y, p, threshold=0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 4)
    assert m["precision"] == pytest.approx(0.6)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(6 / 9)
    assert m["f2"] == pytest.approx(15 / 21)
    assert m["roc_auc"] == pytest.approx(20 / 24)
    assert 0.0 < m["pr_auc"] <= 1.0
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_threshold_is_inclusive() -> None:
    m = classification_metrics([1, 0], [0.5, 0.4], threshold=0.5)
    assert m["tp"] == 1


@pytest.mark.parametrize("label", [0, 1])
def test_classification_metrics_one_class_gives_nan_without_raising(label: int) -> None:
    y = np.full(5, label)
    p = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning either
        m = classification_metrics(y, p, threshold=0.5)
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["pr_auc"])
    if label == 0:
        assert math.isnan(m["recall"])
        assert m["precision"] == 0.0
        assert m["f2"] == 0.0  # alerts without positives are all wrong
    else:
        assert m["recall"] == pytest.approx(3 / 5)


def test_no_alerts_gives_nan_precision_and_zero_f2() -> None:
    m = classification_metrics([1, 0, 0], [0.2, 0.1, 0.0], threshold=0.5)
    assert math.isnan(m["precision"])
    assert m["recall"] == 0.0
    assert m["f2"] == 0.0


def test_expected_cost_by_hand() -> None:
    # fn = 1 (row 1), fp = 2 (rows 2, 3): 1 * 50_000 + 2 * 2_000 = 54_000; per decision / 5
    y = [1, 1, 0, 0, 0]
    alert = [True, False, True, True, False]
    assert expected_cost(y, alert) == 54_000.0
    assert cost_per_asset(y, alert) == pytest.approx(10_800.0)
    assert expected_cost(y, alert, cost_missed=10.0, cost_false_alarm=1.0) == 12.0


def test_interval_coverage_and_width() -> None:
    y = [1.0, 5.0, 10.0]
    lower, upper = [0.0, 6.0, 9.0], [2.0, 8.0, 11.0]
    assert interval_coverage(y, lower, upper) == pytest.approx(2 / 3)
    assert mean_interval_width(lower, upper) == pytest.approx(2.0)
    assert interval_coverage([2.0], [2.0], [2.0]) == 1.0  # bounds included


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        regression_metrics([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics([0, 2], [0.1, 0.2], 0.5)


def _slices_example() -> tuple[dict[str, np.ndarray], float]:
    """Slices a (10 rows, 6 positives), b (20, 10), c (30, 10), d (8, 2).

    Alerts: all positives of a and b, 2 of c's 10, none of d's 2, and one false alarm in b.
    RUL error: +2 in a, -3 in b, 0 in c and d.
    """
    sizes = {"a": 10, "b": 20, "c": 30, "d": 8}
    positives = {"a": 6, "b": 10, "c": 10, "d": 2}
    caught = {"a": 6, "b": 10, "c": 2, "d": 0}
    error = {"a": 2.0, "b": -3.0, "c": 0.0, "d": 0.0}
    labels, failed, proba, err = [], [], [], []
    for s, n in sizes.items():
        pos, hit = positives[s], caught[s]
        labels += [s] * n
        failed += [1] * pos + [0] * (n - pos)
        alerts = [0.9] * hit + [0.1] * (pos - hit) + [0.1] * (n - pos)
        if s == "b":
            alerts[-1] = 0.8  # a false alarm
        proba += alerts
        err += [error[s]] * n
    rul = np.linspace(0, 125, len(labels))
    data = {
        "y_true_rul": rul,
        "y_pred_rul": rul + np.array(err),
        "y_true_failed": np.array(failed),
        "proba": np.array(proba),
        "slices": np.array(labels),
    }
    overall = sum(caught.values()) / sum(positives.values())
    return data, overall


def test_sliced_metrics_rows_and_values() -> None:
    data, _ = _slices_example()
    frame = sliced_metrics(threshold=0.5, **data)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == ["a", "b", "c", "d"]
    assert frame.index.name == "slice"
    assert frame["n"].tolist() == [10, 20, 30, 8]
    assert frame["positives"].tolist() == [6, 10, 10, 2]
    assert frame.loc["a", "rmse"] == pytest.approx(2.0)
    assert frame.loc["b", "mae"] == pytest.approx(3.0)
    assert frame.loc["c", "rmse"] == pytest.approx(0.0)
    assert frame["recall"].tolist() == pytest.approx([1.0, 1.0, 0.2, 0.0])
    assert frame.loc["b", "precision"] == pytest.approx(10 / 11)
    # F2 in c: tp=2, fn=8, fp=0 -> 10 / (10 + 32) = 10/42
    assert frame.loc["c", "f2"] == pytest.approx(10 / 42)


def test_recall_gap_check_flags_the_bad_slice_only() -> None:
    data, overall = _slices_example()
    frame = sliced_metrics(threshold=0.5, **data)
    warned = recall_gap_check(frame, overall_recall=overall)
    # c (0.2 vs 18/28 = 0.64) is flagged; d is as bad but has 2 < 5 positives: noise, skipped
    assert len(warned) == 1
    assert "'c'" in warned[0]
    assert recall_gap_check(frame, overall_recall=overall, max_drop=0.5) == []
    assert len(recall_gap_check(frame, overall_recall=overall, min_positives=1)) == 2


def test_recall_gap_check_skips_slices_without_positives() -> None:
    frame = pd.DataFrame({"recall": [np.nan, 0.9], "positives": [0, 10]}, index=["x", "y"])
    assert recall_gap_check(frame, overall_recall=0.9, min_positives=0) == []
    with pytest.raises(ValueError, match="sliced_metrics"):
        recall_gap_check(pd.DataFrame({"recall": [0.5]}), overall_recall=0.9)


def test_too_few_assets_for_the_folds_is_a_config_error() -> None:
    import pytest

    from prognos.data.labels import run_to_failure_labels
    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.errors import ConfigError
    from prognos.training.config import TrainConfig
    from prognos.training.cv import cross_validate

    fleet = simulate_fleet(SimulatorConfig(n_assets=3, seed=0))
    with pytest.raises(ConfigError, match="3 assets cannot make 5"):
        cross_validate(
            fleet.readings, run_to_failure_labels(fleet.readings), fleet.spec, TrainConfig()
        )
