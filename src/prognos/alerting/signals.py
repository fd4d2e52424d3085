"""The signals alert rules watch, computed by prognos from its own database, so the embedded
default alerts with no Prometheus running.

- ``realised_f2``, ``prediction_psi``, ``drift_share``: figures of the latest live monitoring run
  of each (fleet, model) (what ``/metrics`` exports); subject: the model's name.
- ``latency_p95_ms``: p95 server latency of the predictions made in the rule's ``window``.
- ``seconds_since_last_request``: now minus the newest served prediction.
- ``ingestion_delay_seconds``: now minus the newest reading's arrival.
- ``training_failures_in_a_row``: per model, retraining failures since its last success (the
  audit log's ``retrain.failed`` / ``retrain.succeeded``).
- asset signals, from each asset's latest prediction in the recent window
  (``monitoring_window_hours``): ``should_inspect`` and ``rul_lower``.

Shadow predictions never count. A signal without data (no monitoring run yet, no prediction in
the window) is an :class:`Observation` whose value is None, or no observation at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np

from prognos.alerting.rules import AssetRule, Rule
from prognos.storage import alerts as store
from prognos.storage.database import Database
from prognos.storage.monitoring import latest_runs_by_model

__all__ = ["ALL_FLEETS", "MONITORING_METRICS", "Observation", "Signals"]

# The fleet of a service-wide signal evaluated without PROGNOS_FLEET.
ALL_FLEETS = "*"
# Signal -> the monitoring metric (monitoring_metrics.name, and the Prometheus gauge) it reads.
MONITORING_METRICS = {
    "realised_f2": "model_f2_score_current",
    "prediction_psi": "prediction_drift_psi",
    "drift_share": "data_drift_share",
}


@dataclass(frozen=True)
class Observation:
    """One signal's value for one (fleet, subject). ``value`` None: no data. ``holds`` set by
    asset signals that decide for themselves (None: compare ``value`` with the rule);
    ``threshold`` where the signal knows it (an asset's model threshold)."""

    fleet: str
    subject: str
    value: float | None
    holds: bool | None = None
    threshold: float | None = None
    note: str = ""


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class Signals:
    """The signals of one evaluation at ``now``; each query runs at most once, however many
    rules share it. ``fleet`` None: every fleet."""

    def __init__(
        self, db: Database, now: datetime, *, fleet: str | None = None, asset_hours: float = 24.0
    ) -> None:
        self.db = db
        self.now = now
        self.fleet = fleet
        self.asset_hours = asset_hours
        self._latencies: dict[float, list[float]] = {}

    def observe(self, rule: Rule | AssetRule) -> list[Observation]:
        if isinstance(rule, AssetRule):
            return self._assets(rule)
        metric = MONITORING_METRICS.get(rule.signal)
        if metric is not None:
            return self._monitoring(metric)
        compute: dict[str, Callable[[Rule], list[Observation]]] = {
            "latency_p95_ms": self._latency_p95,
            "seconds_since_last_request": lambda _: self._since(self._newest_prediction),
            "ingestion_delay_seconds": lambda _: self._since(self._newest_reading),
            "training_failures_in_a_row": lambda _: self._training_failures,
        }
        return compute[rule.signal](rule)

    # -- monitoring runs ------------------------------------------------------------------------

    @cached_property
    def _runs(self) -> list[dict[str, Any]]:
        runs = latest_runs_by_model(self.db)
        return [r for r in runs if self.fleet is None or r["fleet"] == self.fleet]

    def _monitoring(self, metric: str) -> list[Observation]:
        out = []
        for run in self._runs:
            values = [m["value"] for m in run["metrics"] if m["name"] == metric and not m["label"]]
            value = _finite(values[-1]) if values else None
            note = f"model {run['model_name']} v{run['model_version']}"
            if value is None:
                note += f": no {metric} in its latest monitoring run"
            out.append(Observation(run["fleet"], str(run["model_name"]), value, note=note))
        return out

    # -- served predictions and readings --------------------------------------------------------

    @property
    def _scope(self) -> str:
        return self.fleet if self.fleet is not None else ALL_FLEETS

    def _latency_p95(self, rule: Rule) -> list[Observation]:
        window = rule.window_seconds
        if window not in self._latencies:
            start = self.now - timedelta(seconds=window)
            self._latencies[window] = store.prediction_latencies(
                self.db, start, self.now, self.fleet
            )
        latencies = self._latencies[window]
        if not latencies:
            return [Observation(self._scope, "", None, note="no predictions in the window")]
        p95 = float(np.percentile(np.asarray(latencies), 95))
        return [Observation(self._scope, "", p95, note=f"{len(latencies)} predictions")]

    @cached_property
    def _newest_prediction(self) -> datetime | None:
        return store.newest_prediction_at(self.db, self.fleet)

    @cached_property
    def _newest_reading(self) -> datetime | None:
        return store.newest_received_at(self.db, self.fleet)

    def _since(self, newest: datetime | None) -> list[Observation]:
        if newest is None:
            return [Observation(self._scope, "", None, note="nothing stored yet")]
        seconds = max(0.0, (self.now - newest).total_seconds())
        return [Observation(self._scope, "", seconds, note=f"newest at {newest.isoformat()}")]

    # -- retraining -----------------------------------------------------------------------------

    @cached_property
    def _training_failures(self) -> list[Observation]:
        trailing: dict[str, int] = {}
        fleets: dict[str, str] = {}
        for event in store.retrain_outcomes(self.db):
            subject = str(event["subject"])
            failed = event["action"] == store.RETRAIN_FAILED
            trailing[subject] = trailing.get(subject, 0) + 1 if failed else 0
            details = event["details"] if isinstance(event["details"], dict) else {}
            fleets[subject] = str(details.get("fleet") or ALL_FLEETS)
        return [
            Observation(fleets[s], s, float(n), note=f"{n} failed since the last success")
            for s, n in sorted(trailing.items())
            if self.fleet is None or fleets[s] in (self.fleet, ALL_FLEETS)
        ]

    # -- assets ---------------------------------------------------------------------------------

    @cached_property
    def _asset_predictions(self) -> list[dict[str, Any]]:
        since = self.now - timedelta(hours=self.asset_hours)
        return store.latest_asset_predictions(self.db, since, self.fleet)

    @cached_property
    def _model_thresholds(self) -> dict[tuple[str, str, str], float]:
        """(fleet, model, version) -> the cost-optimal threshold the live runs recorded."""
        out = {}
        for run in self._runs:
            model = (run.get("summary") or {}).get("model") or {}
            threshold = _finite(model.get("threshold"))
            if threshold is not None:
                out[(run["fleet"], run["model_name"], run["model_version"])] = threshold
        return out

    def _assets(self, rule: AssetRule) -> list[Observation]:
        out = []
        for row in self._asset_predictions:
            note = f"model {row['model_name']} v{row['model_version']} at {row['time']}"
            if rule.signal == "should_inspect":
                key = (row["fleet"], row["model_name"], row["model_version"])
                out.append(
                    Observation(
                        row["fleet"],
                        str(row["asset_id"]),
                        float(row["failure_probability"]),
                        holds=bool(row["should_inspect"]),
                        threshold=self._model_thresholds.get(key),
                        note=note,
                    )
                )
            else:
                lower = float(row["rul_lower"])
                lead = float(rule.lead_time or 0.0)
                out.append(
                    Observation(
                        row["fleet"],
                        str(row["asset_id"]),
                        lower,
                        holds=lower < lead,
                        threshold=lead,
                        note=note,
                    )
                )
        return out
