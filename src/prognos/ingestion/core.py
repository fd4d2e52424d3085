"""The ingestion core: the one path a reading takes, whether it came by HTTP or the stream.

validate → online state → durable store → score → log prediction. :class:`IngestionCore` holds
the served model's scorer (in a compute process of its own by default, see ``compute``), the
database writer and the batcher; ``serving.runtime`` (HTTP) and ``streaming.ingester`` (MQTT)
each hold one and add only what their edge needs. A request goes::

    edge (router / stream ingester) → IngestionCore → Batcher → Scorer → Predictor → OnlineFeatures

The model follows the registry's ``champion`` alias: a background task polls it and, when it
moves, loads the new version off the event loop, seeds its online state from the stored readings
and swaps it in between two batches. Requests in flight finish on the model they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prognos.config import Settings
from prognos.errors import PrognosError
from prognos.ingestion.batching import Batcher, raise_unavailable
from prognos.ingestion.compute import ProcessScorer
from prognos.ingestion.durability import seed_state, spool_dir, wait_durable
from prognos.ingestion.loading import (
    LoadedModel,
    build_predictor,
    champion_version,
    load_model,
    served_fleet,
    settle_heap,
)
from prognos.ingestion.predictor import Prediction, reading_log_row
from prognos.ingestion.scoring import (
    ComputeLostError,
    Kind,
    LocalScorer,
    NoModelError,
    Outcome,
    Scorer,
    ServedModel,
)
from prognos.ingestion.shadowing import Shadowing
from prognos.ingestion.swap import swap_scorer
from prognos.storage.database import Database, database_url
from prognos.storage.models import DEFAULT_FLEET
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.ingestion")

# How soon a compute process that failed to start is tried again.
COMPUTE_RETRY_SECONDS = 5.0
# How often online state that could not be rebuilt (database away) is tried again.
STATE_RETRY_SECONDS = 1.0


@dataclass
class IngestionCore:
    """What one process needs to take readings in and score them (see the module docstring).

    ``on_batch(items, seconds)`` and ``on_prediction(prediction)`` let the edge count them.
    """

    settings: Settings
    on_batch: Callable[[int, float], None] | None = None
    on_prediction: Callable[[Prediction], None] | None = None
    on_model: Callable[[str, str], None] | None = None
    db: Database | None = None
    writer: RecordWriter | None = None
    scorer: Scorer | None = None
    model: ServedModel | None = None
    batcher: Batcher | None = None
    started: float = field(default_factory=time.monotonic)
    registry_ok: bool = False
    registry_error: str | None = None
    compute_error: str | None = None
    model_name: str | None = None
    shadows: Shadowing | None = None  # the challenger's shadow (see ``ingestion.shadow``)
    _poller: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _side: ThreadPoolExecutor | None = None
    _schema_pending: bool = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, model: LoadedModel | None = None) -> None:
        """Open the storage, then load the model and serve (:meth:`open` and :meth:`serve`)."""
        await self.open()
        await self.serve(model)

    async def open(self) -> None:
        """The database (migrated, or migrated later when it answers) and its writer."""
        settings = self.settings
        settings.ensure_home()
        self.db = Database(database_url(settings))
        await self._upgrade()
        self.writer = RecordWriter(self.db, spool_dir(settings, self.db))
        self.writer.start()

    async def serve(self, model: LoadedModel | None = None) -> None:
        """The batcher, the model (``model``, else the champion of ``settings.model_name``) and
        the poller that follows the champion."""
        settings = self.settings
        self._wake = asyncio.Event()
        self.batcher = Batcher(
            lambda: self.scorer,
            on_batch=self.on_batch,
            on_accepted=self._store_reading,
            on_scored=self.log_prediction,
            on_lost=self._wake.set,
            on_unready=self._wake.set,
        )
        await self.batcher.start()
        if self.writer is not None:
            self.shadows = Shadowing(settings, writer=self.writer, db=self.db, audit=self.audit)
        self.model_name = model.name if model is not None else settings.model_name
        if model is not None:
            await self.install(model.name, model.version, model)
        elif self.model_name is not None:
            await self.reload()
        await self.follow_challenger()
        self._poller = asyncio.create_task(self._poll(), name="prognos-model-poller")
        self.audit("service", "started", self.model_name or "", {"pid": os.getpid()})

    async def stop(self) -> None:
        gc.unfreeze()
        if self._poller is not None:
            self._poller.cancel()
        if self.shadows is not None:
            await self.shadows.close()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.scorer is not None:
            await asyncio.to_thread(self.scorer.close)
        if self._side is not None:
            self._side.shutdown(wait=True)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close, 10.0)
        if self.db is not None:
            self.db.dispose()

    # -- the model -----------------------------------------------------------------------------

    def _make_scorer(self, name: str, version: str, model: LoadedModel | None) -> Scorer:
        """A compute process for a registered version (the default), else the model in this
        process (``PROGNOS_COMPUTE_PROCESS=false``, or a model handed over already loaded)."""
        if model is None and self.settings.compute_process:
            return ProcessScorer(self.settings, name, version)
        if model is None:
            model = load_model(self.settings, name, version)
        if self._side is None:
            self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prognos-explain")
        predictor = build_predictor(self.settings, model)
        fleet = served_fleet(self.settings, predictor)
        return LocalScorer(predictor, side=self._side, db=self.db, fleet=fleet)

    async def install(self, name: str, version: str, model: LoadedModel | None = None) -> None:
        """Load, seed and swap in ``name``/``version`` without losing a reading, while readings
        keep arriving (:mod:`prognos.ingestion.swap`)."""
        assert self.batcher is not None
        scorer = await asyncio.to_thread(self._make_scorer, name, version, model)

        def swap_in(new: Scorer) -> None:
            self.scorer, self.model = new, new.model

        swap = await swap_scorer(
            scorer, self.batcher, self.writer, current=lambda: self.scorer, install=swap_in
        )
        previous = swap.previous
        self.registry_ok, self.registry_error = True, None
        if self.on_model is not None:
            self.on_model(name, version)
        pid = scorer.pid
        self.audit(
            "service",
            "model_loaded",
            f"{name}/{version}",
            {
                "previous": None if previous is None else previous.model.version,
                "seeded": swap.seeded,
                "replayed": swap.replayed,
                "repaired": swap.repaired,
                "compute_pid": pid,
            },
        )
        log.info("serving %s version %s in process %d (%d asset states seeded, %d readings "
                 "replayed)", name, version, pid, swap.seeded, swap.replayed)  # fmt: skip
        if previous is not None:
            await asyncio.to_thread(previous.close)
        del previous, swap
        settle_heap()

    async def rebuild_state(self) -> bool:
        """Rebuild the served model's online state if it is not ready (the database was away
        at start-up, or the state store lost its states); True when it is ready now."""
        scorer, batcher = self.scorer, self.batcher
        if scorer is None or batcher is None or scorer.ready:
            return True
        if self._schema_pending:
            await self._upgrade()
        seeded = await seed_state(
            scorer, self.writer, batcher.run_in_compute_thread, STATE_RETRY_SECONDS
        )
        if seeded is None:
            return False
        self.audit("service", "state_rebuilt", f"{scorer.model.name}/{scorer.model.version}",
                   {"seeded": seeded})  # fmt: skip
        log.info("online state rebuilt (%d asset states seeded)", seeded)
        return True

    async def _upgrade(self) -> None:
        """Migrate the schema; a database that is down now is migrated when it answers."""
        assert self.db is not None
        try:
            await asyncio.to_thread(self.db.upgrade)
        except PrognosError as exc:
            self._schema_pending = True
            log.warning("database not ready (%s); records are spooled meanwhile", exc)
        else:
            self._schema_pending = False

    def compute_ok(self) -> bool:
        return self.scorer is not None and self.scorer.alive

    async def reload(self) -> bool:
        """Load the champion if it is not what we serve (or its compute process stopped); True
        when a new scorer was installed."""
        name = self.model_name
        if name is None:
            return False
        try:
            version = await asyncio.to_thread(champion_version, self.settings, name)
        except Exception as exc:  # registry away: keep serving what we have, say so in /health
            self.registry_ok, self.registry_error = False, str(exc)[:300]
            log.warning("registry check failed: %s", exc)
            return False
        self.registry_ok, self.registry_error = True, None
        if version is None and self.model is None:
            self.registry_error = f"registered model {name!r} has no champion (yet)"
        if version is None or (
            self.model is not None and self.model.version == version and self.compute_ok()
        ):
            return False
        try:
            await self.install(name, version)
        except ComputeLostError as exc:  # the compute process did not start or died seeding
            self.compute_error = str(exc)[:300]
            log.warning("no compute process for %s/%s: %s", name, version, exc)
            return False
        except Exception as exc:  # the version could not be loaded from the registry
            self.registry_ok, self.registry_error = False, str(exc)[:300]
            log.warning("loading %s/%s failed: %s", name, version, exc)
            return False
        self.compute_error = None
        return True

    async def _poll(self) -> None:
        assert self._wake is not None
        next_reload = time.monotonic() + self.settings.model_poll_seconds
        while True:
            # Woken early when the compute process was lost, to start a new one at once, or
            # when a batch found the state not ready; while one fails to start, or the state
            # cannot be rebuilt, tried again every few seconds rather than every poll.
            wait = max(0.0, next_reload - time.monotonic())
            if self.compute_error is not None:
                wait = min(wait, COMPUTE_RETRY_SECONDS)
            unready = self.scorer is not None and not self.scorer.ready
            if unready or self._schema_pending:
                wait = min(wait, STATE_RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            if self.compute_ok():
                if self._schema_pending:
                    await self._upgrade()
                await self.rebuild_state()
            if (
                not self.compute_ok()
                or self.compute_error is not None
                or time.monotonic() >= next_reload
            ):
                next_reload = time.monotonic() + self.settings.model_poll_seconds
                await self.reload()
                await self.follow_challenger()

    async def follow_challenger(self) -> None:
        """Start, keep or stop the shadow of the ``challenger`` version (polled with the
        champion; see ``ingestion.shadow``)."""
        if self.shadows is not None and self.model_name is not None:
            champion = None if self.model is None else self.model.version
            await self.shadows.follow(self.model_name, champion, self.fleet)

    # -- durability ----------------------------------------------------------------------------

    async def acknowledge(self) -> None:
        """Return once every record submitted so far (this request's among them) is committed
        to the database or fsynced in the spool: only then may the request be answered 2xx.

        Waits on the writer's group commit without blocking the loop. Raises
        :class:`StorageUnavailableError` (503) when that takes over ``ack_timeout_seconds``
        (a database that hangs rather than refuses): the records stay queued and are stored
        later, and a retry is safe (readings and predictions are idempotent).
        """
        if self.writer is not None:
            await wait_durable(self.writer, self.settings.ack_timeout_seconds)

    # -- the one path ---------------------------------------------------------------------------

    async def submit(
        self, kind: Kind, items: Sequence[Any], *, explain: bool = False
    ) -> list[Outcome]:
        """Run one job on the batcher; a dependency outage (state store, no model) raises for
        the whole job (503), an item's own problem is in its outcome."""
        if self.batcher is None:
            raise NoModelError("the ingestion core is not started")
        outcomes = await self.batcher.submit(kind, items, explain=explain)
        raise_unavailable(outcomes)
        return outcomes

    async def ingest(self, readings: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Fold readings (in time order per asset) into the online state and return once the
        accepted ones are durable: each outcome says accepted, duplicate or why not."""
        outcomes = await self.submit("ingest", readings)
        await self.acknowledge()
        return outcomes

    def log_prediction(self, prediction: Prediction, latency_ms: float) -> None:
        """Queue a served prediction for the database (durable at the next acknowledge).

        Thread-safe: the batcher calls it on the compute thread for jobs submitted with ``log``.
        """
        if self.on_prediction is not None:
            self.on_prediction(prediction)
        if self.writer is not None:
            row = prediction.log_row(latency_ms, self.fleet)
            self.writer.submit("prediction", row, normalised=True)
        if self.shadows is not None:
            self.shadows.offer_score(prediction)

    @property
    def fleet(self) -> str:
        """The fleet this core's readings belong to: ``PROGNOS_FLEET``, else the model's."""
        if self.settings.fleet is not None:
            return self.settings.fleet
        return self.model.fleet_name if self.model is not None else DEFAULT_FLEET

    # -- audit -----------------------------------------------------------------------------------

    def _store_reading(self, reading: Mapping[str, Any], asset: str, when: int) -> None:
        """Queue an accepted reading for the database (on the compute thread, see install)."""
        if self.writer is not None:
            self.writer.submit(
                "reading", reading_log_row(reading, asset, when, self.fleet), normalised=True
            )
        if self.shadows is not None:  # after the writer: a shadow reseeds from the table
            self.shadows.offer_reading(reading, asset, when)

    def audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.submit(
                "audit",
                {
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "details": details,
                    "at": datetime.now(UTC),
                },
            )
