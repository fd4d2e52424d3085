"""The latest live monitoring run of each (fleet, model) as Prometheus gauges on ``/metrics``.

The figures live in the database (``prognos monitor run`` writes them), so every worker and
replica exports the same values, read by a daemon thread at most every
``monitoring_refresh_seconds``. A scrape waits for a due refresh at most ``wait_seconds`` and
otherwise shows the last figures it has: a slow or unreachable database delays ``/metrics`` by
that much at worst and never fails it. ``monitoring_run_timestamp_seconds`` says how old the
figures are, so stale ones can be alerted on.

Names are those of the reference specification, without a prefix; each series carries ``fleet``,
``model_name`` and ``model_version``, and per-column figures a label such as ``feature_name``.
An undefined figure (a recall without failures) has no series rather than a made-up value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from prognos.errors import StorageError
from prognos.storage import monitoring as store
from prognos.storage.database import Database

__all__ = ["MonitoringGauges", "families"]

log = logging.getLogger("prognos.serving")

# The label a metric row's ``label`` is exported under.
LABEL_KEYS = {
    "feature_drift_score": "feature_name",
    "feature_drift_threshold": "feature_name",
    "feature_drift_detected": "feature_name",
    "data_missing_value_rate": "feature_name",
    "data_outliers_total": "feature_name",
    "data_dead_letters_total": "reason",
    "data_ingestion_lag_seconds": "statistic",
    "model_precision_estimated": "scope",
    "model_recall_estimated": "scope",
    "model_f2_score_estimated": "scope",
    "model_false_alarm_rate_estimated": "scope",
}
HELP = {
    "feature_drift_score": "Drift score of a feature in the recent window (higher: more drift)",
    "feature_drift_threshold": "The score above which the feature counts as drifted",
    "feature_drift_detected": "1 when the feature drifted (score past its threshold)",
    "prediction_drift_psi": "PSI of the served predictions against the reference",
    "model_f2_score_current": "Realised F2 of the served decisions (labelled predictions)",
    "model_precision_current": "Realised precision of the served decisions",
    "model_recall_current": "Realised recall of the served decisions",
    "model_false_alarm_rate": "Realised false-alarm rate: FP / (FP + TN)",
    "model_f2_score_estimated": "CBPE estimate of F2 from calibrated probabilities",
    "model_predictions_unlabelled": "Predictions whose outcome is not known yet (censored)",
    "model_interval_coverage_current": "Share of realised RULs inside the served interval",
    "model_interval_coverage_out_of_band": "1 when interval coverage is outside its band",
    "data_missing_value_rate": "Share of missing channel values in the recent window",
    "data_outliers_total": "Values outside the fleet's plausible ranges in the recent window",
    "data_ingestion_lag_seconds": "Event time to arrival of readings (timestamp fleets)",
}
_RUN_LABELS = ("fleet", "model_name", "model_version")


def families(runs: Iterable[dict[str, Any]]) -> list[Metric]:
    """Gauge families from runs with their ``metrics`` (``store.latest_runs_by_model``)."""
    out: dict[str, Metric] = {}

    def family(name: str) -> Metric:
        if name not in out:
            text = HELP.get(name, "prognos monitoring figure (see GET /monitoring/latest)")
            out[name] = Metric(name, text, "gauge")
        return out[name]

    for run in runs:
        base = {key: str(run[key]) for key in _RUN_LABELS}
        finished = run.get("finished_at") or run["started_at"]
        family("monitoring_run_timestamp_seconds").add_sample(
            "monitoring_run_timestamp_seconds", base, finished.timestamp()
        )
        for metric in run["metrics"]:
            if metric["value"] is None:
                continue
            labels = dict(base)
            if metric["label"]:
                labels[LABEL_KEYS.get(metric["name"], "label")] = metric["label"]
            family(metric["name"]).add_sample(metric["name"], labels, float(metric["value"]))
    return list(out.values())


class MonitoringGauges(Collector):
    """A Prometheus collector over the stored runs; register it once per process."""

    def __init__(self, db: Database, refresh_seconds: float, *, wait_seconds: float = 1.0) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self._wait_seconds = wait_seconds
        self._runs: list[dict[str, Any]] = []
        self._refreshed_at = -float("inf")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read the database

    def collect(self) -> Iterator[Metric]:
        self._maybe_refresh()
        yield from families(self._runs)

    def _maybe_refresh(self) -> None:
        with self._lock:
            due = time.monotonic() - self._refreshed_at >= self._refresh_seconds
            if due and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._refresh, name="prognos-monitoring-gauges", daemon=True
                )
                self._thread.start()
            thread = self._thread
        if thread is not None:
            thread.join(self._wait_seconds)

    def _refresh(self) -> None:
        try:
            runs = store.latest_runs_by_model(self._db)
        except StorageError as exc:
            # Keep the last figures; their timestamp gauge shows their age.
            if self.last_error is None:
                log.warning("monitoring gauges: cannot read the latest runs: %s", exc)
            self.last_error = str(exc)
        else:
            self._runs, self.last_error = runs, None
        self._refreshed_at = time.monotonic()
