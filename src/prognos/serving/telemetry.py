"""Prometheus metrics of one service instance, in its own registry (no process-wide globals).

With several uvicorn workers ``prognos serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory
under the home, unless already set to a shared empty one): ``/metrics`` then adds up every worker
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.registry import Collector
from starlette.responses import Response

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._model_labels: tuple[str, str] | None = None
        # Collectors whose values are the same in every worker (read from the database): shown
        # as they are, also in multiprocess mode, where nothing adds them up.
        self._shared: list[Collector] = []
        r = self.registry
        self.requests = Counter(
            "prognos_api_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "prognos_api_latency_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "prognos_api_errors", "Requests that ended in an error", ["endpoint", "error_type"],
            registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            "prognos_predictions", "Predictions served", ["risk_level"], registry=r
        )
        self.batch_size = Histogram(
            "prognos_compute_batch_items",
            "Items per coalesced compute batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "prognos_compute_batch_seconds", "Compute time per batch", buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.model = Gauge(
            "prognos_model_info", "The model being served (value 1)", ["name", "version"],
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.dependency = Gauge(
            "prognos_dependency_up", "1 when a dependency answers", ["dependency"], registry=r,
            multiprocess_mode="livemin",
        )  # fmt: skip
        self.spooled = Gauge(
            "prognos_log_records_spooled", "Records waiting on disk for the database",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.rejected = Gauge(
            "prognos_log_records_rejected",
            "Acknowledged records the database refused since start-up (kept under "
            "spool/rejected/; validation should make this 0)",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip

        # The challenger's shadow (ingestion.shadow), read from its own counts at each scrape.
        self.shadow_scored = Counter(
            "prognos_shadow_predictions", "Challenger predictions logged in the champion's shadow",
            registry=r,
        )  # fmt: skip
        self.shadow_dropped = Counter(
            "prognos_shadow_dropped",
            "Readings and score requests the shadow dropped (overflow, state rebuilt, down)",
            registry=r,
        )
        self.shadow_queued = Gauge(
            "prognos_shadow_queued", "Events waiting for the shadow", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self._shadow_seen = {"scored": 0, "dropped": 0}
        # Each request's series by (endpoint, method, status): ``labels()`` validates and locks
        # on every call (~10 µs a request on this machine); the set of keys is bounded by the
        # routes.
        self._series: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._by_risk: dict[str, Any] = {}

    def sync_shadow(self, totals: dict[str, int], queued: int) -> None:
        """Bring the shadow counters up to ``totals`` (the shadow's counts since start-up)."""
        for key, counter in (("scored", self.shadow_scored), ("dropped", self.shadow_dropped)):
            delta = totals[key] - self._shadow_seen[key]
            if delta > 0:
                counter.inc(delta)
                self._shadow_seen[key] = totals[key]
        self.shadow_queued.set(queued)

    def set_model(self, name: str, version: str) -> None:
        # Zero the old series before dropping it: in multiprocess mode its value lives on in
        # this worker's file, and /metrics would report two models served.
        if self._model_labels is not None:
            self.model.labels(*self._model_labels).set(0)
        self.model.clear()
        self.model.labels(name, version).set(1)
        self._model_labels = (name, version)

    def count_prediction(self, risk_level: str) -> None:
        """One prediction served (its series cached as :meth:`record`'s are)."""
        counter = self._by_risk.get(risk_level)
        if counter is None:
            counter = self._by_risk[risk_level] = self.predictions.labels(risk_level)
        counter.inc()

    def on_batch(self, items: int, seconds: float) -> None:
        self.batch_size.observe(items)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)
            for collector in self._shared:
                registry.register(collector)
            body = generate_latest(registry)
        else:
            body = generate_latest(self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def add_shared(self, collector: Collector) -> None:
        """Export ``collector`` (e.g. the monitoring gauges) from this worker as it is."""
        self.registry.register(collector)
        self._shared.append(collector)

    def close(self) -> None:
        """At a worker's exit: its live gauges (model, dependencies) stop counting."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            prom_multiprocess.mark_process_dead(os.getpid())

    def record(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """One finished request, by route template (``/assets/{asset_id}``), not raw path: one
        series per route whatever ids clients send."""
        series = self._series.get((endpoint, method, status))
        if series is None:
            series = (
                self.latency.labels(endpoint),
                self.requests.labels(endpoint, method, str(status)),
                self.errors.labels(endpoint, str(status)) if status >= 400 else None,
            )
            self._series[(endpoint, method, status)] = series
        latency, requests, errors = series
        latency.observe(seconds)
        requests.inc()
        if errors is not None:
            errors.inc()
