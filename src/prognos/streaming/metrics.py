"""The stream ingester's Prometheus metrics, in a registry of its own (no process globals), served
on ``--metrics-port`` (``PROGNOS_STREAM_METRICS_PORT``) at ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class StreamMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    received: Counter = field(init=False)
    stored: Counter = field(init=False)
    duplicates: Counter = field(init=False)
    dead_letters: Counter = field(init=False)
    acked: Counter = field(init=False)
    predictions: Counter = field(init=False)
    retries: Counter = field(init=False)
    batch_seconds: Histogram = field(init=False)
    latency_seconds: Histogram = field(init=False)
    connected: Gauge = field(init=False)
    _server: Any = None

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter("prognos_stream_messages_received", "Messages taken from the "
                                "broker (redeliveries included).", registry=r)  # fmt: skip
        self.stored = Counter("prognos_stream_readings_stored", "Readings accepted and durable.",
                              registry=r)  # fmt: skip
        self.duplicates = Counter("prognos_stream_duplicates", "Readings already stored "
                                  "(redelivered or published twice): acknowledged, not stored "
                                  "again.", registry=r)  # fmt: skip
        self.dead_letters = Counter("prognos_stream_dead_letters", "Messages kept in the "
                                    "dead-letter table, by reason.", ["reason"],
                                    registry=r)  # fmt: skip
        self.acked = Counter("prognos_stream_messages_acked", "Messages acknowledged to the "
                             "broker (only once durable).", registry=r)  # fmt: skip
        self.predictions = Counter("prognos_stream_predictions", "Assets scored and logged.",
                                   registry=r)  # fmt: skip
        self.retries = Counter("prognos_stream_batch_retries", "Batches retried because the "
                               "database, the state store or the model was away.",
                               registry=r)  # fmt: skip
        self.batch_seconds = Histogram("prognos_stream_batch_seconds", "From taking a batch to "
                                       "acknowledging it.", buckets=_LATENCY_BUCKETS,
                                       registry=r)  # fmt: skip
        self.latency_seconds = Histogram("prognos_stream_publish_to_prediction_seconds",
                                         "From the publisher's sent_at to the asset's "
                                         "prediction being logged.", buckets=_LATENCY_BUCKETS,
                                         registry=r)  # fmt: skip
        self.connected = Gauge("prognos_stream_connected", "1 while connected to the broker.",
                               registry=r)  # fmt: skip

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on a daemon thread (stopped by :meth:`close`)."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent): for summaries and tests."""
        found = self.registry.get_sample_value(name, labels or None)
        return 0.0 if found is None else float(found)
