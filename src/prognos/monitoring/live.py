"""One live monitoring run (``prognos monitor run``): read the recent window of the database,
compute data quality, drift, realised and estimated performance and interval coverage for one
fleet and model version, store the run with its figures, and write its HTML report.

Two windows, both ending now and both by arrival time: the *recent* window
(``monitoring_window_hours``) for data quality and drift, and the longer *label* window
(``monitoring_label_window_hours``) for performance, because feedback arrives long after the
predictions it judges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from prognos.config import Settings
from prognos.errors import NotFoundError, PrognosError
from prognos.fleet import FleetSpec
from prognos.ingestion.loading import champion_version, load_model
from prognos.monitoring.drift import detect_drift
from prognos.monitoring.live_report import render_live_report
from prognos.monitoring.performance import PerformanceResult, assess_performance, label_predictions
from prognos.monitoring.profile import load_profile
from prognos.monitoring.quality import QualityResult, data_quality
from prognos.registry.versions import RegistryError
from prognos.storage import monitoring as store
from prognos.storage.database import Database
from prognos.storage.monitoring import Metric

__all__ = [
    "DriftCheck",
    "LiveResult",
    "MonitoredModel",
    "Window",
    "load_monitored",
    "profile_drift",
    "run_live",
]

log = logging.getLogger(__name__)

# (readings: asset_id, time, the fleet's channels, predicted_rul; predictions: asset_id, time,
# failure_probability, rul) -> a :class:`~prognos.monitoring.drift.DriftResult` (or alike).
DriftCheck = Callable[[pd.DataFrame, pd.DataFrame], Any]


@dataclass(frozen=True)
class MonitoredModel:
    """What monitoring needs of a registered version (not the model itself)."""

    name: str
    version: str
    spec: FleetSpec
    horizon: int
    rul_cap: float
    threshold: float
    coverage: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "fleet": self.spec.name,
            "time_kind": self.spec.time_kind,
            "horizon": self.horizon,
            "rul_cap": self.rul_cap,
            "threshold": self.threshold,
            "coverage": self.coverage,
        }


def load_monitored(settings: Settings, name: str, version: str | None = None) -> MonitoredModel:
    """The facts of ``name``'s ``version`` (default: its champion) from its registered bundle."""
    if version is None:
        version = champion_version(settings, name)
        if version is None:
            raise RegistryError(f"registered model {name!r} has no champion: pass --version")
    bundle = load_model(settings, name, version).bundle
    return MonitoredModel(
        name=name,
        version=str(version),
        spec=bundle.fleet,
        horizon=int(bundle.horizon),
        rul_cap=float(bundle.rul_cap),
        threshold=float(bundle.post.threshold),
        coverage=float(bundle.post.intervals.coverage),
    )


def profile_drift(settings: Settings, model: MonitoredModel) -> tuple[DriftCheck | None, str]:
    """The drift check against the version's reference profile, or None and why not (a model
    trained without a profile is still monitored for quality and performance)."""
    try:
        profile = load_profile(settings, model.name, model.version)
    except NotFoundError as exc:
        return None, str(exc)

    def check(readings: pd.DataFrame, predictions: pd.DataFrame) -> Any:
        return detect_drift(profile, readings, predictions)

    return check, ""


@dataclass(frozen=True)
class Window:
    start: datetime  # of the recent window
    end: datetime
    label_start: datetime  # of the label window

    @classmethod
    def ending(cls, end: datetime, hours: float, label_hours: float) -> Window:
        return cls(
            start=end - timedelta(hours=hours),
            end=end,
            label_start=end - timedelta(hours=max(hours, label_hours)),
        )

    def to_json(self) -> dict[str, str]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "label_start": self.label_start.isoformat(),
        }


@dataclass
class LiveResult:
    run_id: str
    fleet: str
    model: MonitoredModel
    window: Window
    started_at: datetime
    finished_at: datetime
    quality: QualityResult
    performance: PerformanceResult
    drift: dict[str, Any]  # {"available": bool, "reason"?: str, ...the drift result's JSON}
    drift_detected: bool
    share_drifted: float
    metrics: list[Metric]
    report_path: Path | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json(),
            "window": self.window.to_json(),
            "quality": self.quality.to_json(),
            "drift": self.drift,
            "performance": self.performance.to_json(),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "kind": "live",
            "fleet": self.fleet,
            "model_name": self.model.name,
            "model_version": self.model.version,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "drift_detected": self.drift_detected,
            "share_drifted": self.share_drifted,
            "report_path": None if self.report_path is None else str(self.report_path),
            "summary": self.summary(),
            "metrics": [{"name": m.name, "label": m.label, "value": m.value} for m in self.metrics],
        }


def run_live(
    settings: Settings,
    db: Database,
    model: MonitoredModel,
    *,
    fleet: str | None = None,
    drift: DriftCheck | None = None,
    drift_unavailable: str = "no drift check was given",
    now: datetime | None = None,
    window_hours: float | None = None,
    label_window_hours: float | None = None,
    write_report: bool = True,
) -> LiveResult:
    """Compute, store and report one run; ``fleet`` defaults to ``PROGNOS_FLEET``, else the
    model's fleet. ``drift`` None skips drift (``drift_unavailable`` says why, in the run)."""
    started = datetime.now(UTC)
    end = (now or started).astimezone(UTC)
    fleet = fleet or settings.fleet or model.spec.name
    window = Window.ending(
        end,
        window_hours or settings.monitoring_window_hours,
        label_window_hours or settings.monitoring_label_window_hours,
    )
    limit = settings.monitoring_max_rows
    readings = store.window_readings(db, fleet, window.start, window.end, limit)
    predictions = store.window_predictions(
        db, fleet, model.name, model.version, window.label_start, window.end, limit
    )
    feedback = store.window_feedback(db, fleet, predictions["asset_id"].unique())
    reached = store.last_reading_times(db, fleet, model.name, model.version, window.label_start)
    dead = store.dead_letter_counts(db, fleet, window.start, window.end)

    quality = data_quality(readings, model.spec, dead, end)
    labelled, untimed = label_predictions(
        predictions, feedback, reached, horizon=model.horizon, time_kind=model.spec.time_kind
    )
    performance = assess_performance(
        labelled,
        rul_cap=model.rul_cap,
        nominal_coverage=model.coverage,
        band=(settings.monitoring_coverage_min, settings.monitoring_coverage_max),
        min_count=settings.monitoring_coverage_min_count,
        untimed_failures=untimed,
    )
    for frame, what in ((readings, "readings"), (predictions, "predictions")):
        if len(frame) >= limit:  # only the newest were read
            performance.notes.append(
                f"the window holds more {what} than monitoring_max_rows ({limit:,}): "
                "only the newest were used"
            )
    recent = predictions[predictions["created_at"] >= pd.Timestamp(window.start)]
    drift_json, drift_metrics, detected, share = _drift(
        drift, drift_unavailable, readings, recent, model.spec
    )
    metrics = [*quality.metrics(), *drift_metrics, *performance.metrics()]
    result = LiveResult(
        run_id=store.new_run_id(),
        fleet=fleet,
        model=model,
        window=window,
        started_at=started,
        finished_at=datetime.now(UTC),
        quality=quality,
        performance=performance,
        drift=drift_json,
        drift_detected=detected,
        share_drifted=share,
        metrics=metrics,
    )
    if write_report:
        result.report_path = _write_report(settings, result)
    store.write_run(
        db,
        {
            "id": result.run_id,
            "started_at": result.started_at,
            "finished_at": result.finished_at,
            "kind": "live",
            "fleet": fleet,
            "model_name": model.name,
            "model_version": model.version,
            "window_start": window.start,
            "window_end": window.end,
            "drift_detected": detected,
            "share_drifted": share,
            "report_path": None if result.report_path is None else str(result.report_path),
            "summary": result.summary(),
        },
        metrics,
    )
    return result


def _drift(
    check: DriftCheck | None,
    unavailable: str,
    readings: pd.DataFrame,
    predictions: pd.DataFrame,
    spec: FleetSpec,
) -> tuple[dict[str, Any], list[Metric], bool, float]:
    """The drift part of a run: its JSON, its metrics, detected, share drifted."""
    if check is None:
        return {"available": False, "reason": unavailable}, [], False, math.nan
    if readings.empty:
        return {"available": False, "reason": "no readings in the window"}, [], False, math.nan
    # Every channel of the spec, NaN where the window never carried it.
    frame = readings.reindex(columns=spec.columns)
    served = predictions.drop_duplicates(["asset_id", "time"], keep="last")
    frame = frame.merge(
        served[["asset_id", "time", "rul"]].rename(columns={"rul": "predicted_rul"}),
        on=["asset_id", "time"],
        how="left",
    )
    try:
        result = check(frame, served[["asset_id", "time", "failure_probability", "rul"]])
    except PrognosError as exc:  # e.g. readings the profile cannot place: quality still counts
        log.warning("drift check failed: %s", exc)
        return {"available": False, "reason": f"drift check failed: {exc}"}, [], False, math.nan
    share = float(result.share_drifted)
    metrics = [
        *(
            Metric("feature_drift_score", column.score, name)
            for name, column in result.columns.items()
            if column.score is not None  # too few readings to test
        ),
        *(
            Metric("feature_drift_threshold", column.threshold, name)
            for name, column in result.columns.items()
            if column.score is not None and column.threshold is not None
        ),
        *(
            Metric("feature_drift_detected", 1.0 if column.drifted else 0.0, name)
            for name, column in result.columns.items()
            if column.score is not None
        ),
        Metric("data_drift_share", share),
        Metric("data_drift_detected", 1.0 if result.drift_detected else 0.0),
    ]
    prediction: Mapping[str, Any] = result.prediction_drift or {}
    for key, name in (
        ("failure_probability_psi", "prediction_drift_psi"),
        ("rul_shift_sd", "prediction_rul_shift_sd"),
    ):
        if prediction.get(key) is not None:
            metrics.append(Metric(name, float(prediction[key])))
    return {"available": True, **result.to_json()}, metrics, bool(result.drift_detected), share


def _write_report(settings: Settings, result: LiveResult) -> Path:
    folder = settings.reports_dir / "monitoring"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.run_id}.html"
    path.write_text(render_live_report(result.to_json()), encoding="utf-8")
    return path
