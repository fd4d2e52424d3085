"""Labels from late, censored feedback, the figures at the served decision, CBPE and coverage,
each against the hand computation of ``tests/helpers/monitoring.py``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prognos.monitoring.coverage import interval_coverage
from prognos.monitoring.performance import (
    NS_PER_HOUR,
    assess_performance,
    estimated_metrics,
    label_predictions,
)
from prognos.storage.monitoring import FEEDBACK_COLUMNS, PREDICTION_COLUMNS
from tests.helpers import monitoring as case


def predictions_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)[PREDICTION_COLUMNS]
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def feedback_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).reindex(columns=FEEDBACK_COLUMNS)
    frame["failure_time"] = pd.to_datetime(frame["failure_time"], utc=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["failure_occurred"] = frame["failure_occurred"].astype(bool)
    for column in ("failure_cycle", "prediction_time"):
        frame[column] = frame[column].astype("Int64")
    return frame


def labelled(late: bool) -> pd.DataFrame:
    rows = [r for r in case.prediction_rows() if r["model_version"] == case.VERSION]
    feedback = case.feedback_rows() + ([case.LATE_FEEDBACK] if late else [])
    frame, untimed = label_predictions(
        predictions_frame(rows), feedback_frame(feedback), case.REACHED, horizon=case.HORIZON
    )
    assert untimed == 0
    return frame.set_index(["asset_id", "time"])


def test_labels_follow_the_rules_and_a_censored_asset_is_no_negative() -> None:
    before, after = labelled(late=False)["label"], labelled(late=True)["label"]
    assert len(after) == 11  # the superseded duplicate of (A, 22) is gone
    assert after[("A", 5)] == 0 and after[("A", 15)] == 0  # failure after t + H
    assert after[("A", 22)] == 1 and after[("A", 30)] == 1  # within H; T == t counts
    assert after[("B", 10)] == 0 and after[("B", 25)] == 0  # readings reach t + H
    assert math.isnan(after[("B", 35)])  # still running, horizon not elapsed: censored
    assert math.isnan(before[("C", 12)]) and math.isnan(before[("C", 18)])
    assert after[("C", 12)] == 0 and after[("C", 18)] == 1  # the late label decides both
    assert after[("D", 5)] == 0 and after[("D", 20)] == 0  # readings; the inspection at 30


def test_the_newest_duplicate_prediction_stands() -> None:
    row = labelled(late=True).loc[("A", 22)]
    assert row["failure_probability"] == 0.7 and bool(row["should_inspect"])


def test_realised_rul_for_every_prediction_before_a_failure() -> None:
    rul = labelled(late=True)["realised_rul"]
    assert rul[("A", 5)] == 25 and rul[("A", 30)] == 0 and rul[("C", 18)] == 6
    assert rul[("B", 10)] != rul[("B", 10)]  # no failure: no realised RUL


def assess(late: bool) -> Any:
    return assess_performance(
        labelled(late).reset_index(),
        rul_cap=case.RUL_CAP,
        nominal_coverage=0.9,
        band=(0.8, 0.97),
        min_count=3,
    )


def test_counts_and_figures_at_the_served_decision_before_and_after_a_late_label() -> None:
    before, after = assess(late=False), assess(late=True)
    assert {k: before.counts[k] for k in ("labelled", "positives", "negatives", "unlabelled")} == {
        "labelled": 8,
        "positives": 2,
        "negatives": 6,
        "unlabelled": 3,
    }
    # TP 2 (A22, A30), FP 1 (B10), FN 0, TN 5.
    assert before.realised == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f2": 10 / 11, "false_alarm_rate": 1 / 6}
    )
    c = after.counts
    assert (c["labelled"], c["positives"], c["negatives"], c["unlabelled"]) == (10, 3, 7, 1)
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (2, 1, 1, 6)  # C18 was missed
    assert after.realised == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f2": 10 / 15, "false_alarm_rate": 1 / 7}
    )


def test_rul_errors_and_coverage_against_the_capped_realised_rul() -> None:
    after = assess(late=True)
    # Truth min(T - t, 20): A 20, 15, 8, 0; C 12, 6. Errors 10, -3, -2, 3, 8, 4.
    assert after.rul["mae"] == pytest.approx(30 / 6)
    assert after.rul["rmse"] == pytest.approx(math.sqrt(202 / 6))
    assert after.rul["bias"] == pytest.approx(20 / 6)
    cov = after.coverage
    assert (cov.count, cov.covered) == (6, 5) and cov.coverage == pytest.approx(5 / 6)
    assert cov.status == "ok" and not cov.out_of_band  # 0.833 is inside 0.80-0.97
    assert assess(late=False).coverage.coverage == 1.0  # out of band above 0.97
    assert assess(late=False).coverage.out_of_band


def test_cbpe_estimate_is_the_expected_confusion_matrix() -> None:
    after = assess(late=True)
    # Alerts: A22 .7, A30 .9, B10 .2, B35 .6; silences: .1 .3 .1 .4 .5 .05 .2.
    tp, fp, fn, tn = 2.4, 1.6, 1.65, 5.35
    assert after.estimated == pytest.approx(
        {
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "f2": 5 * tp / (5 * tp + 4 * fn + fp),
            "false_alarm_rate": fp / (fp + tn),
        }
    )
    tp, fp = 1.8, 1.2  # the labelled predictions only: without B35
    assert after.estimated_labelled["precision"] == pytest.approx(tp / (tp + fp))
    assert after.estimated_labelled["recall"] == pytest.approx(tp / (tp + fn))


def test_cbpe_matches_the_realised_figures_when_labels_follow_the_probabilities() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 2.0, 200_000)
    decision = p >= 0.3
    y = rng.random(p.size) < p
    tp, fp = (y & decision).sum(), (~y & decision).sum()
    fn, tn = (y & ~decision).sum(), (~y & ~decision).sum()
    estimate = estimated_metrics(p, decision)
    assert estimate["precision"] == pytest.approx(tp / (tp + fp), abs=0.01)
    assert estimate["recall"] == pytest.approx(tp / (tp + fn), abs=0.01)
    assert estimate["false_alarm_rate"] == pytest.approx(fp / (fp + tn), abs=0.01)


def test_no_labels_give_undefined_figures_not_zeros() -> None:
    frame = labelled(late=False).loc[[("B", 35)]].reset_index()  # censored
    result = assess_performance(
        frame, rul_cap=20.0, nominal_coverage=0.9, band=(0.8, 0.97), min_count=1
    )
    assert result.counts["labelled"] == 0 and result.counts["unlabelled"] == 1
    assert all(math.isnan(v) for v in result.realised.values())
    assert math.isnan(result.coverage.coverage) and result.coverage.status == "insufficient"
    assert not result.coverage.out_of_band


def test_timestamp_fleet_uses_failure_time_and_hours() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    ns = int(t0.timestamp()) * 10**9
    rows = [
        {"id": f"p{h}", "asset_id": "X", "time": ns + h * NS_PER_HOUR, "created_at": t0,
         "failure_probability": 0.5, "rul": 5.0, "rul_lower": 1.0, "rul_upper": 9.0,
         "should_inspect": True}
        for h in (0, 10, 20)
    ]  # fmt: skip
    feedback = [
        {"id": "f1", "asset_id": "X", "failure_occurred": True, "created_at": t0,
         "failure_time": t0 + timedelta(hours=26)},
        {"id": "f2", "asset_id": "X", "failure_occurred": True, "created_at": t0},
    ]  # fmt: skip
    frame, untimed = label_predictions(
        predictions_frame(rows), feedback_frame(feedback), {}, horizon=12, time_kind="timestamp"
    )
    assert untimed == 1  # a failure without a time labels nothing
    assert frame["label"].tolist() == [0.0, 0.0, 1.0]  # 26 h after t=0 and t=10: beyond 12 h
    assert frame["realised_rul"].tolist() == pytest.approx([26.0, 16.0, 6.0])


def test_coverage_band_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="not ordered"):
        interval_coverage(np.ones(3), np.zeros(3), np.ones(3), nominal=0.9, band=(0.9, 0.8),
                          min_count=1)  # fmt: skip


def test_predictions_without_any_feedback_are_censored_or_negative() -> None:
    rows = [r for r in case.prediction_rows() if r["model_version"] == case.VERSION]
    predictions = predictions_frame(rows)
    predictions["asset_id"] = predictions["asset_id"].astype("string")  # as pandas may read it
    frame, _ = label_predictions(
        predictions, feedback_frame([]), case.REACHED, horizon=case.HORIZON
    )
    labels = frame.set_index(["asset_id", "time"])["label"]
    assert labels[("B", 10)] == 0 and math.isnan(labels[("A", 22)])  # A's failure unknown
    assert frame["realised_rul"].isna().all()
