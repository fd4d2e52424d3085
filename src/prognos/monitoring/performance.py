"""Realised performance from late, censored feedback, and its estimate before the labels come.

**Label rules.** A prediction at time ``t`` (the reading it was made on, in the fleet's time:
cycles, or nanoseconds for timestamp fleets) with horizon ``H`` (the model's, in cycles or hours)
is

- a *positive* when a failure was reported at ``T`` with ``t <= T <= t + H``. ``T == t`` counts:
  as in the training labels, a failure logged at ``t`` ends cycle ``t``, after its reading;
- a *negative* when the asset is known to have run past ``t + H`` without failing: its stored
  readings reach ``t + H``, its next reported failure is after ``t + H``, or an "inspected, no
  failure" report at ``S >= t + H`` (``S``: the report's own failure time or cycle if it has
  one, else the time of the prediction it names);
- otherwise *unlabelled* (censored): an asset that has not failed yet is no negative.

A failure at ``T`` also gives every prediction of that asset at ``t <= T`` its realised RUL
``T - t`` (hours for timestamp fleets), compared capped at the model's ``rul_cap`` as in training:
RUL MAE/RMSE and interval coverage (:mod:`.coverage`) use those. The predicted class is the
stored ``should_inspect``: the served, cost-optimal decision at the served threshold.

Labelled predictions are not a random sample of recent ones: a failure labels its predictions at
once, a survival only after ``H``. Realised figures over a recent window therefore lean towards
the positives; the counts say how much is still unlabelled.

**Estimate (CBPE).** With calibrated probabilities ``p`` (what the model's calibration step,
fitted on out-of-fold predictions grouped by asset, is for), the expected confusion matrix of the
decisions ``d`` is ``TP = sum p·d``, ``FP = sum (1-p)·d``, ``FN = sum p·(1-d)``, ``TN = sum
(1-p)·(1-d)``, and precision, recall, F2 and the false-alarm rate follow from it (ratios of
expected counts, NannyML's CBPE). The estimate is honest only while the probabilities stay
calibrated on current data: under covariate shift with an unchanged failure mechanism it holds,
under concept drift (the same readings now mean a different risk) it does not. So it is reported
beside the realised figure, on the same labelled predictions, as the check of that assumption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from prognos.monitoring.coverage import CoverageResult, interval_coverage
from prognos.storage.monitoring import Metric

__all__ = [
    "NS_PER_HOUR",
    "PerformanceResult",
    "assess_performance",
    "confusion_metrics",
    "estimated_metrics",
    "label_predictions",
]

NS_PER_HOUR = 3_600 * 10**9
TimeKind = Literal["cycle", "timestamp"]
_FIGURES = ("precision", "recall", "f2", "false_alarm_rate")


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def confusion_metrics(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """Precision, recall, F2 (recall weighted 2x) and the false-alarm rate ``FP / (FP + TN)``
    (the share of assets that would not fail that were sent to inspection); NaN where a ratio
    has nothing to divide by."""
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f2": _ratio(5 * tp, 5 * tp + 4 * fn + fp),
        "false_alarm_rate": _ratio(fp, fp + tn),
    }


def estimated_metrics(probability: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """CBPE: the figures of the expected confusion matrix of ``decision`` (bool) when each
    positive has probability ``probability`` (see the module docstring for when to trust it)."""
    p = np.asarray(probability, dtype="float64")
    d = np.asarray(decision, dtype=bool)
    return confusion_metrics(
        float(p[d].sum()), float((1 - p[d]).sum()), float(p[~d].sum()), float((1 - p[~d]).sum())
    )


def _fleet_time(feedback: pd.DataFrame, time_kind: TimeKind) -> pd.Series:
    """Each feedback row's own time in the fleet's unit, as float (NaN where it has none)."""
    if time_kind == "cycle":
        return feedback["failure_cycle"].astype("float64")
    stamps = feedback["failure_time"]
    out = pd.Series(np.nan, index=feedback.index, dtype="float64")
    known = stamps.notna()
    epoch = pd.Timestamp(0, tz="UTC")
    out[known] = ((stamps[known] - epoch) // pd.Timedelta(nanoseconds=1)).astype("float64")
    return out


def label_predictions(
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
    last_times: dict[str, int],
    *,
    horizon: float,
    time_kind: TimeKind = "cycle",
) -> tuple[pd.DataFrame, int]:
    """The predictions (one per asset and time: the newest) with ``label`` (1.0, 0.0 or NaN
    for unlabelled) and ``realised_rul`` (NaN without a reported failure at or after them),
    by the rules in the module docstring; and the number of failures reported without a time
    of the fleet's kind (they label nothing)."""
    frame = (
        predictions.sort_values(["created_at", "id"], kind="stable")
        .drop_duplicates(["asset_id", "time"], keep="last")
        .sort_values("time", kind="stable")
        .reset_index(drop=True)
    )
    frame["time"] = frame["time"].astype("int64")
    frame["asset_id"] = frame["asset_id"].astype(object)  # one dtype on both sides of the merge
    span = float(horizon) * (NS_PER_HOUR if time_kind == "timestamp" else 1)
    own = _fleet_time(feedback, time_kind)
    failed = feedback["failure_occurred"].to_numpy(dtype=bool)
    failures = pd.DataFrame(
        {"asset_id": feedback["asset_id"][failed].astype(object), "failure_at": own[failed]}
    ).dropna()
    untimed = int(failed.sum() - len(failures))
    failures["failure_at"] = failures["failure_at"].astype("int64")
    failures = failures.sort_values("failure_at", kind="stable")
    # The first failure at or after each prediction: the end of the life it was made in.
    frame = pd.merge_asof(
        frame,
        failures,
        left_on="time",
        right_on="failure_at",
        by="asset_id",
        direction="forward",
        allow_exact_matches=True,
    )
    survived = pd.Series(last_times, dtype="float64")
    healthy = ~failed
    if healthy.any():
        # An "inspected, no failure" report: alive at its own time, else at its prediction's.
        alive_at = own[healthy].fillna(feedback["prediction_time"][healthy].astype("float64"))
        inspected = alive_at.groupby(feedback["asset_id"][healthy]).max()
        survived = pd.concat([survived, inspected]).groupby(level=0).max()
    reached = frame["asset_id"].map(survived).to_numpy(dtype="float64")
    end = frame["time"].to_numpy(dtype="float64") + span
    failure_at = frame["failure_at"].to_numpy(dtype="float64")
    label = np.full(len(frame), np.nan)
    label[(reached >= end) | (failure_at > end)] = 0.0
    label[failure_at <= end] = 1.0  # NaN compares False: no failure, no positive
    frame["label"] = label
    rul = failure_at - frame["time"].to_numpy(dtype="float64")
    frame["realised_rul"] = rul / NS_PER_HOUR if time_kind == "timestamp" else rul
    return frame.drop(columns="failure_at"), untimed


@dataclass
class PerformanceResult:
    """Counts, realised and estimated figures, RUL errors and interval coverage of one window."""

    counts: dict[str, int]
    realised: dict[str, float]
    estimated: dict[str, float]  # over every prediction in the window
    estimated_labelled: dict[str, float]  # over the labelled ones: comparable to ``realised``
    rul: dict[str, float]
    coverage: CoverageResult
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> list[Metric]:
        c = self.counts
        out = [
            Metric("model_predictions_total", float(c["predictions"])),
            Metric("model_predictions_labelled", float(c["labelled"])),
            Metric("model_predictions_positive", float(c["positives"])),
            Metric("model_predictions_negative", float(c["negatives"])),
            Metric("model_predictions_unlabelled", float(c["unlabelled"])),
            Metric("model_precision_current", self.realised["precision"]),
            Metric("model_recall_current", self.realised["recall"]),
            Metric("model_f2_score_current", self.realised["f2"]),
            Metric("model_false_alarm_rate", self.realised["false_alarm_rate"]),
        ]
        for scope, figures in (("all", self.estimated), ("labelled", self.estimated_labelled)):
            out += [
                Metric("model_precision_estimated", figures["precision"], scope),
                Metric("model_recall_estimated", figures["recall"], scope),
                Metric("model_f2_score_estimated", figures["f2"], scope),
                Metric("model_false_alarm_rate_estimated", figures["false_alarm_rate"], scope),
            ]
        out += [
            Metric("model_rul_realised_total", float(c["realised_rul"])),
            Metric("model_rul_mae_current", self.rul["mae"]),
            Metric("model_rul_rmse_current", self.rul["rmse"]),
            *self.coverage.metrics(),
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "realised": self.realised,
            "estimated": self.estimated,
            "estimated_labelled": self.estimated_labelled,
            "rul": self.rul,
            "coverage": self.coverage.to_json(),
            "notes": self.notes,
        }


def assess_performance(
    labelled: pd.DataFrame,
    *,
    rul_cap: float,
    nominal_coverage: float,
    band: tuple[float, float],
    min_count: int,
    untimed_failures: int = 0,
) -> PerformanceResult:
    """Every figure from :func:`label_predictions`'s frame."""
    has_label = labelled["label"].notna().to_numpy()
    y = labelled["label"].to_numpy()[has_label] == 1.0
    d = labelled["should_inspect"].to_numpy(dtype=bool)
    p = labelled["failure_probability"].to_numpy(dtype="float64")
    dl = d[has_label]
    tp, fp = int(np.count_nonzero(y & dl)), int(np.count_nonzero(~y & dl))
    fn, tn = int(np.count_nonzero(y & ~dl)), int(np.count_nonzero(~y & ~dl))
    timed = labelled["realised_rul"].notna().to_numpy()
    truth = np.minimum(labelled["realised_rul"].to_numpy(dtype="float64")[timed], rul_cap)
    error = labelled["rul"].to_numpy(dtype="float64")[timed] - truth
    notes = []
    if untimed_failures:
        notes.append(
            f"{untimed_failures} reported failures have no time of the fleet's kind "
            "(failure_cycle / failure_time) and label nothing"
        )
    return PerformanceResult(
        counts={
            "predictions": len(labelled),
            "labelled": int(has_label.sum()),
            "positives": tp + fn,
            "negatives": fp + tn,
            "unlabelled": int((~has_label).sum()),
            "realised_rul": int(timed.sum()),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "untimed_failures": untimed_failures,
        },
        realised=confusion_metrics(tp, fp, fn, tn),
        estimated=estimated_metrics(p, d),
        estimated_labelled=estimated_metrics(p[has_label], dl),
        rul={
            "mae": float(np.mean(np.abs(error))) if error.size else math.nan,
            "rmse": float(np.sqrt(np.mean(error**2))) if error.size else math.nan,
            "bias": float(np.mean(error)) if error.size else math.nan,
        },
        coverage=interval_coverage(
            truth,
            labelled["rul_lower"].to_numpy(dtype="float64")[timed],
            # NULL: open above ("more than rul_lower"), which no realised RUL exceeds.
            labelled["rul_upper"].fillna(np.inf).to_numpy(dtype="float64")[timed],
            nominal=nominal_coverage,
            band=band,
            min_count=min_count,
        ),
        notes=notes,
    )
