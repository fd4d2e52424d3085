"""Turning stored rows into what the pages draw: chart series (JSON for uPlot), the explanation
as a waterfall, RUL intervals as text. Plain functions of their inputs, no I/O."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from prognos.ingestion.scoring import RegimeScaling, ServedModel
from prognos.storage.models import FEEDBACK_EVENTS

EVENTS = FEEDBACK_EVENTS
WATERFALL_TERMS = 10


def interval(lower: float | None, upper: float | None) -> str:
    """``60–110``, or ``> 60`` when the interval is open above the RUL cap."""
    if lower is None:
        return "–"
    if upper is None or not math.isfinite(upper):
        return f"> {lower:.0f}"
    return f"{lower:.0f}–{upper:.0f}"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def history_series(predictions: list[dict[str, Any]], threshold: float | None) -> dict[str, Any]:
    """An asset's predictions (newest first, as stored) as oldest-first series: time, failure
    probability with the alert threshold, RUL with its interval (the upper end null where open)."""
    rows = list(reversed(predictions))
    return {
        "x": [int(r["time"]) for r in rows],
        "probability": [_finite(r["failure_probability"]) for r in rows],
        "threshold": None if threshold is None else float(threshold),
        "rul": [_finite(r["rul"]) for r in rows],
        "lower": [_finite(r["rul_lower"]) for r in rows],
        "upper": [_finite(r["rul_upper"]) for r in rows],
    }


def sensor_series(readings: list[dict[str, Any]], model: ServedModel | None) -> dict[str, Any]:
    """Each sensor's raw values over time and, with the served model's regime scaling, the same
    values standardised within their operating regime (what the model's features start from)."""
    x = [int(r["time"]) for r in readings]
    names = list(model.sensor_names) if model is not None else _channels(readings)
    raw = {n: [_finite(r["values"].get(n)) for r in readings] for n in names}
    normalised: dict[str, list[float | None]] = {}
    regimes: list[int] = []
    scaling = model.scaling if model is not None else None
    if scaling is not None and readings:
        normalised, regimes = _normalise(readings, model, scaling)  # type: ignore[arg-type]
    return {"x": x, "sensors": names, "raw": raw, "normalised": normalised, "regimes": regimes}


def _channels(readings: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in readings:
        names.update(dict.fromkeys(k for k in r["values"] if not k.startswith("setting")))
    return sorted(names)


def _normalise(
    readings: list[dict[str, Any]], model: ServedModel, scaling: RegimeScaling
) -> tuple[dict[str, list[float | None]], list[int]]:
    def column(name: str) -> list[float]:
        return [_nan(r["values"].get(name)) for r in readings]

    settings = np.array([column(n) for n in model.setting_names], dtype=np.float64).T
    sensors = np.array([column(n) for n in scaling.sensors], dtype=np.float64).T
    if settings.size == 0:
        settings = np.zeros((len(readings), 0))
    if np.isnan(settings).any():  # a reading without its settings has no regime
        settings = np.nan_to_num(settings)
    z, regime = scaling.normalise(settings, sensors.reshape(len(readings), -1))
    series = {n: [_finite(v) for v in z[:, j]] for j, n in enumerate(scaling.sensors)}
    return series, [int(r) for r in regime]


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def waterfall(explanation: Any) -> dict[str, Any] | None:
    """The logged explanation as steps from the base log-odds to the served one: each term's
    start and end (what raised the risk goes right, what lowered it left), positioned on a
    0–100 scale for the bars, and the probabilities at both ends."""
    if not isinstance(explanation, dict) or "contributions" not in explanation:
        return None  # an older log row (a list of features) has no base to start from
    base, logit = float(explanation["base"]), float(explanation["logit"])
    terms = [
        (str(c["feature"]), c.get("value"), float(c["contribution"]))
        for c in explanation["contributions"][:WATERFALL_TERMS]
    ]
    rest = float(explanation.get("other", 0.0)) + sum(
        float(c["contribution"]) for c in explanation["contributions"][WATERFALL_TERMS:]
    )
    if abs(rest) > 1e-12:
        terms.append(("everything else", None, rest))
    steps, level = [], base
    for name, value, contribution in terms:
        steps.append({"name": name, "value": value, "delta": contribution, "start": level})
        level += contribution
    points = [base, logit, *(s["start"] for s in steps), *(s["start"] + s["delta"] for s in steps)]
    low, high = min(points), max(points)
    span = (high - low) or 1.0

    def pos(v: float) -> float:
        return round(100 * (v - low) / span, 2)

    for s in steps:
        a, b = pos(s["start"]), pos(s["start"] + s["delta"])
        s.update(left=min(a, b), width=max(abs(b - a), 0.4), raises=s["delta"] > 0)
    return {
        "base": base,
        "logit": logit,
        "base_probability": _sigmoid(base),
        "probability": _sigmoid(logit),
        "steps": steps,
        "base_pos": pos(base),
        "end_pos": pos(logit),
    }


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def drift_series(history: list[dict[str, Any]], top: int = 8) -> dict[str, Any]:
    """Per-column drift scores over runs (``metric_history`` rows) as a chart: the ``top``
    columns with the highest latest score, one line each."""
    runs: dict[str, datetime] = {}
    by_column: dict[str, dict[str, float | None]] = {}
    for row in history:
        runs.setdefault(row["run_id"], row["at"])
        by_column.setdefault(row["label"], {})[row["run_id"]] = _finite(row["value"])
    order = sorted(runs, key=lambda r: runs[r])
    last = order[-1] if order else ""
    ranked = sorted(by_column, key=lambda c: -(by_column[c].get(last) or 0.0))[:top]
    return {
        "x": [runs[r].timestamp() for r in order],
        "time": True,
        "yLabel": "drift score",
        "series": [{"label": c, "values": [by_column[c].get(r) for r in order]} for c in ranked],
    }


def scalar_series(history: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """One unlabelled figure over runs (``metric_history`` rows) as a chart."""
    rows = [r for r in history if r["label"] == ""]
    return {
        "x": [r["at"].timestamp() for r in rows],
        "time": True,
        "yLabel": label,
        "series": [{"label": label, "values": [_finite(r["value"]) for r in rows]}],
    }
