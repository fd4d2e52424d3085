"""Publisher and ingester in one process: ``prognos demo``'s live stream, over the broker when
one is configured and over the in-process queue otherwise (it says which)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from prognos.config import Settings
from prognos.data.faults import Fault
from prognos.data.sources import load_source
from prognos.errors import ConfigError, StreamError
from prognos.streaming.ingester import StreamIngester
from prognos.streaming.memory import MemoryBroker
from prognos.streaming.messages import subscription
from prognos.streaming.publisher import (
    PublishReport,
    TransportFaults,
    outgoing,
    publish,
    simulated_fleet,
)
from prognos.streaming.transport import (
    BrokerUrl,
    MqttSender,
    MqttSubscription,
    Sender,
    Subscription,
)

# How long a broker may take to accept the connection and the subscription.
CONNECT_SECONDS = 15.0


@dataclass
class StreamSummary:
    """What one run did, end to end (published -> durable -> state -> scored)."""

    transport: str
    published: int
    readings: int
    stored: int
    duplicates: int
    predictions: int
    dead_letters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    latency_p50: float | None = None
    latency_p95: float | None = None
    complete: bool = True  # every published message was acknowledged before the end

    @property
    def readings_per_second(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        dead = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters.items())) or "none"
        lines = [
            f"transport: {self.transport}",
            f"published {self.published} messages ({self.readings} readings); stored "
            f"{self.stored}, duplicates {self.duplicates}, dead letters: {dead}",
            f"{self.predictions} predictions; {self.readings_per_second:,.0f} readings/s over "
            f"{self.seconds:.1f} s",
        ]
        if self.latency_p50 is not None and self.latency_p95 is not None:
            lines.append(f"publish-to-prediction latency p50 {self.latency_p50 * 1000:.0f} ms, "
                         f"p95 {self.latency_p95 * 1000:.0f} ms")  # fmt: skip
        if not self.complete:
            lines.append("not every message was ingested before the time limit")
        return lines


def _transports(
    broker_url: str | None, fleet: str
) -> tuple[str, Subscription, Sender, Callable[[], bool]]:
    if broker_url is None:
        broker = MemoryBroker()
        return (
            "in-process queue (no broker configured)",
            broker.subscription(subscription(fleet)),
            broker.sender(),
            lambda: True,
        )
    if broker_url.startswith("kafka"):
        from prognos.streaming.kafka import KafkaSender, KafkaSubscription

        kafka_sub = KafkaSubscription(broker_url, fleet, group=f"prognos-demo-{fleet}")
        kafka_sender = KafkaSender(broker_url)

        def kafka_ready() -> bool:
            return kafka_sub.wait_subscribed(CONNECT_SECONDS) and kafka_sender.wait_connected(
                CONNECT_SECONDS
            )

        return f"Kafka broker {broker_url.split('@')[-1]}", kafka_sub, kafka_sender, kafka_ready
    url = BrokerUrl.parse(broker_url)
    client_id = f"prognos-demo-{fleet}-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    sub = MqttSubscription(broker_url, subscription(fleet), client_id=client_id,
                           session_expiry=300)  # fmt: skip
    sender = MqttSender(broker_url)

    def ready() -> bool:
        return sub.wait_subscribed(CONNECT_SECONDS) and sender.wait_connected(CONNECT_SECONDS)

    return f"MQTT broker {url.host}:{url.port}", sub, sender, ready


@dataclass(frozen=True)
class StreamPlan:
    """What to stream: ``source`` (else ``assets`` simulated assets with ``readings`` each),
    ``faults``, at ``rate`` messages/s (None: as fast as it goes), over ``broker_url`` (else
    ``PROGNOS_MQTT_URL``, else an in-process queue); ``settle_seconds`` bounds the wait for the
    ingester to take everything published."""

    source: str | None = None
    assets: int = 20
    readings: int = 60
    rate: float | None = None
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    broker_url: str | None = None
    settle_seconds: float = 120.0


async def stream(
    settings: Settings, plan: StreamPlan, say: Callable[[str], None] = print
) -> StreamSummary:
    """See :func:`run_stream`."""
    broker_url, faults, seed = plan.broker_url, plan.faults, plan.seed
    if settings.model_name is None:
        raise ConfigError("say which model scores the stream (PROGNOS_MODEL_NAME)")
    if broker_url is None and settings.mqtt_url is not None:
        broker_url = settings.mqtt_url.get_secret_value()
    fleet = settings.fleet or "demo"
    settings = settings.model_copy(update={"fleet": fleet})
    data = (
        load_source(plan.source)
        if plan.source
        else simulated_fleet(plan.assets, plan.readings, seed)
    )
    name, sub, sender, ready = _transports(broker_url, fleet)
    say(f"transport: {name}")
    ingester = StreamIngester(settings, sub)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop), name="prognos-stream-ingester")
    try:
        await ingester.ready.wait()
        if not await asyncio.to_thread(ready):
            raise StreamError(f"the {name} did not accept the connection or the subscription")
        if ingester.core.shadows is not None:
            # A challenger's shadow seeds from the stored readings while it starts: what streams
            # in meanwhile is in its seed, and the champion's scores of it are missed.
            await asyncio.to_thread(ingester.core.shadows.wait_idle, plan.settle_seconds)
        started = time.perf_counter()
        messages = outgoing(data, fleet, faults, seed=seed)
        report: PublishReport = await asyncio.to_thread(
            publish, sender, messages, rate=plan.rate, faults=TransportFaults(faults, seed)
        )
        deadline = time.monotonic() + plan.settle_seconds
        while _acked(ingester) < report.published and time.monotonic() < deadline:
            if task.done():
                break
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
        complete = _acked(ingester) >= report.published
        shadows = ingester.core.shadows
        if shadows is not None:  # the challenger's shadow logs its share before we stop
            await asyncio.to_thread(shadows.wait_idle, max(1.0, deadline - time.monotonic()))
    finally:
        stop.set()
        await task
        sender.close()
    m = ingester.metrics
    lat = np.array(ingester.latencies)
    dead = {
        s.labels["reason"]: int(s.value)
        for metric in m.dead_letters.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    return StreamSummary(
        transport=name,
        published=report.published,
        readings=report.readings,
        stored=int(m.value("prognos_stream_readings_stored_total")),
        duplicates=int(m.value("prognos_stream_duplicates_total")),
        predictions=int(m.value("prognos_stream_predictions_total")),
        dead_letters=dead,
        seconds=seconds,
        latency_p50=float(np.percentile(lat, 50)) if lat.size else None,
        latency_p95=float(np.percentile(lat, 95)) if lat.size else None,
        complete=complete,
    )


def _acked(ingester: StreamIngester) -> float:
    return ingester.metrics.value("prognos_stream_messages_acked_total")


def run_stream(
    settings: Settings,
    plan: StreamPlan | None = None,
    *,
    say: Callable[[str], None] = print,
) -> StreamSummary:
    """Publish a fleet and ingest it through the shared ingestion core with
    ``settings.model_name`` (see :class:`StreamPlan`); ``say`` gets progress lines, the
    transport first ("in-process queue" when no broker is configured). The summary says what
    was stored, dead-lettered and scored, and how fast."""
    return asyncio.run(stream(settings, plan or StreamPlan(), say))
