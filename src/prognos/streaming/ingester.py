"""The stream ingester: messages in batches through the shared ingestion core, acknowledged only
once durable.

Per batch: decode and validate (:mod:`~prognos.streaming.messages`), ``core.ingest`` (returns
once the accepted readings are durable), score each asset of the batch once on its newest state,
log those predictions and the dead letters, ``core.acknowledge()``, and only then acknowledge
the batch's messages to the broker. A message the ingester dies holding is redelivered; its
reading is then a duplicate (the same (fleet, asset, time)) and is acknowledged without being
stored twice. A database, state-store or model outage fails the whole batch before anything is
acknowledged; it is retried with backoff and never dropped.

Within a batch each asset's readings are taken in time order, so messages reordered in transit
by less than a batch are healed; a reading older than what its asset already took is a dead
letter (``out_of_order``) unless it is already stored (a redelivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from prognos.config import Settings
from prognos.errors import (
    OutOfOrderReadingError,
    StateStoreError,
    StorageError,
)
from prognos.features.online import time_key
from prognos.ingestion.core import IngestionCore
from prognos.ingestion.readings import ReadingIn
from prognos.ingestion.scoring import NoModelError
from prognos.storage.database import Database
from prognos.storage.models import Reading
from prognos.streaming.messages import Message, Rejection, dead_letter_row, decode
from prognos.streaming.metrics import StreamMetrics
from prognos.streaming.transport import Inbox, Subscription

log = logging.getLogger("prognos.streaming")

# What makes a batch wait and retry instead of being acknowledged.
OUTAGES = (StorageError, StateStoreError, NoModelError)
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
LATENCY_SAMPLES = 1_000_000


def _time_order(reading: ReadingIn) -> tuple[str, int, Any]:
    if reading.cycle is not None:
        return (reading.equipment_id, 0, reading.cycle)
    return (reading.equipment_id, 1, reading.timestamp)


def stored_values(
    db: Database, fleet: str, keys: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Mapping[str, float | None]]:
    """The stored values of those (asset, time) keys of ``fleet`` that are in the table."""
    by_asset: dict[str, list[int]] = {}
    for asset, when in keys:
        by_asset.setdefault(asset, []).append(when)
    found: dict[tuple[str, int], Mapping[str, float | None]] = {}
    with db.translate_errors("reading stored readings"), db.engine.connect() as conn:
        for asset, times in by_asset.items():
            stmt = select(Reading.time, Reading.values).where(
                Reading.fleet == fleet, Reading.asset_id == asset, Reading.time.in_(times)
            )
            for when, values in conn.execute(stmt):
                found[(asset, int(when))] = values
    return found


@dataclass
class _Verdicts:
    stored: int = 0
    duplicates: int = 0
    dead: list[tuple[Message, Rejection]] = field(default_factory=list)
    # asset -> sent_at of its newest reading in the batch (None: not known)
    score: dict[str, float | None] = field(default_factory=dict)


@dataclass
class StreamIngester:
    """Takes one :class:`Subscription` through one :class:`IngestionCore` (see the module
    docstring). ``latencies`` keeps publish-to-prediction seconds for summaries."""

    settings: Settings
    subscription: Subscription
    metrics: StreamMetrics = field(default_factory=StreamMetrics)
    core: IngestionCore = field(init=False)
    inbox: Inbox = field(default_factory=Inbox)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.core = IngestionCore(self.settings)

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set; what is taken but not yet durable stays unacknowledged
        (the broker redelivers it to the next ingester of the session or group)."""
        settings = self.settings
        if settings.stream_metrics_port is not None:
            self.metrics.serve(settings.stream_metrics_port, settings.stream_metrics_host)
        await self.core.start()
        try:
            self.inbox.bind(asyncio.get_running_loop())
            self.subscription.start(self.inbox)
            self.ready.set()
            linger = settings.stream_batch_wait_ms / 1000.0
            while not stop.is_set():
                batch = await self.inbox.take(settings.stream_batch_max, linger, timeout=0.25)
                self.metrics.connected.set(1 if self.subscription.connected else 0)
                if batch:
                    self.metrics.received.inc(len(batch))
                    await self._settle(batch, stop)
        finally:
            self.subscription.close()
            await self.core.stop()
            self.metrics.close()

    async def _settle(self, batch: list[Message], stop: asyncio.Event) -> None:
        """Process and acknowledge ``batch``, retrying through outages until it is done or
        ``stop`` is set (then it stays unacknowledged)."""
        started = time.perf_counter()
        backoff = RETRY_FIRST_SECONDS
        while True:
            try:
                verdicts = await self._process(batch)
                break
            except OUTAGES as exc:
                self.metrics.retries.inc()
                log.warning("batch of %d messages not stored yet (%s); retrying in %.1f s",
                            len(batch), exc, backoff)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                if stop.is_set():
                    return
                backoff = min(backoff * 2, RETRY_MAX_SECONDS)
        self.subscription.ack(batch)
        m = self.metrics
        m.acked.inc(len(batch))
        m.stored.inc(verdicts.stored)
        m.duplicates.inc(verdicts.duplicates)
        for _, rejection in verdicts.dead:
            m.dead_letters.labels(rejection.reason).inc()
        m.batch_seconds.observe(time.perf_counter() - started)

    async def _process(self, batch: list[Message]) -> _Verdicts:
        core = self.core
        decoded = decode(batch, core.model)
        items = sorted(decoded.readings, key=lambda item: _time_order(item[1]))
        verdicts = _Verdicts(dead=list(decoded.rejected))
        outcomes = await core.ingest([r.as_reading() for _, r in items]) if items else []
        late: list[tuple[Message, ReadingIn, Exception]] = []
        for (message, reading), outcome in zip(items, outcomes, strict=True):
            error = outcome.error
            if error is None:
                if outcome.duplicate:
                    verdicts.duplicates += 1
                else:
                    verdicts.stored += 1
                verdicts.score[reading.equipment_id] = message.sent_at
            elif isinstance(error, OutOfOrderReadingError):
                late.append((message, reading, error))
            else:
                reason = getattr(error, "reason", None) or type(error).__name__
                verdicts.dead.append((message, Rejection(reason, str(error))))
        if late:
            await self._redelivered(late, verdicts)
        writer = core.writer
        assert writer is not None
        fleet, source = core.fleet, self.subscription.source
        for message, rejection in verdicts.dead:
            writer.submit("dead_letter", dead_letter_row(message, rejection, fleet=fleet,
                                                         source=source))  # fmt: skip
        if verdicts.score:
            await self._score(verdicts.score)
        await core.acknowledge()
        return verdicts

    async def _redelivered(
        self, late: list[tuple[Message, ReadingIn, Exception]], verdicts: _Verdicts
    ) -> None:
        """Older than the asset's newest: a duplicate when stored with the same values (a
        redelivery after a crash), else out of order (as over HTTP)."""
        assert self.core.db is not None
        keys = [(r.equipment_id, time_key(r.time())) for _, r, _ in late]
        stored = await asyncio.to_thread(stored_values, self.core.db, self.core.fleet, keys)
        for (message, reading, error), key in zip(late, keys, strict=True):
            values = stored.get(key)
            mine = {k: v for k, v in reading.as_reading().items() if k not in ("asset_id", "time")}
            if values is not None and {k: float(v) for k, v in mine.items()} == dict(values):
                verdicts.duplicates += 1
            else:
                verdicts.dead.append((message, Rejection("out_of_order", str(error))))

    async def _score(self, assets: dict[str, float | None]) -> None:
        core = self.core
        ids = list(assets)
        outcomes = await core.submit("current", ids)
        now = time.time()
        for asset, outcome in zip(ids, outcomes, strict=True):
            if outcome.prediction is None:
                log.warning("asset %s not scored: %s", asset, outcome.error)
                continue
            self.metrics.predictions.inc()
            sent_at = assets[asset]
            latency = max(0.0, now - sent_at) if sent_at is not None else 0.0
            core.log_prediction(outcome.prediction, latency * 1000.0)
            if sent_at is not None:
                self.latencies.append(latency)
                self.metrics.latency_seconds.observe(latency)
