"""What one service process holds: the scorer of the model being served (in a compute process
of its own by default, see ``compute``), the database writer, the batcher and the metrics; built
in the app's lifespan, never at import.

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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prognos.config import Settings
from prognos.errors import PrognosError
from prognos.features.online import OnlineFeatures
from prognos.features.stores import make_state_store
from prognos.models.bundle import ModelBundle
from prognos.serving.batching import Batcher
from prognos.serving.predictor import Predictor, reading_log_row
from prognos.serving.scoring import ComputeLostError, LocalScorer, Scorer, ServedModel
from prognos.serving.security import KeyCache, Principal, RateLimiter
from prognos.serving.telemetry import Telemetry
from prognos.storage import repository
from prognos.storage.database import Database, database_url
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.serving")

# How soon a compute process that failed to start is tried again.
COMPUTE_RETRY_SECONDS = 5.0


def settle_heap() -> None:
    """Put everything alive now (the model, the libraries) out of the cyclic collector's reach.

    Otherwise each full collection walks millions of long-lived objects: measured 200-400 ms
    pauses every few seconds under load, most of the p95 at 1000 users. ``gc.freeze()`` is
    CPython's tool for this; unfreezing first lets a replaced model's cycles be collected. The
    one collection here is a single pause per model load.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class LoadedModel:
    bundle: ModelBundle
    name: str
    version: str


def load_model(settings: Settings, name: str, version: str) -> LoadedModel:
    """One registered version's bundle, loaded by its number so we know exactly what we serve."""
    import mlflow

    from prognos.registry import versions
    from prognos.registry.tracking import connect

    connect(settings)  # models:/ URIs resolve against MLflow's current store
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # MLflow raises many types for a store or artifact problem
        raise versions.RegistryError(f"cannot load {name} version {version}: {exc}") from exc
    bundle = model.unwrap_python_model().bundle
    return LoadedModel(bundle=bundle, name=name, version=str(version))


def load_champion(settings: Settings, name: str) -> LoadedModel:
    """The champion version's bundle."""
    from prognos.registry import versions

    version = champion_version(settings, name)
    if version is None:
        raise versions.RegistryError(f"registered model {name!r} has no champion")
    return load_model(settings, name, version)


def build_predictor(settings: Settings, model: LoadedModel) -> Predictor:
    """The model with its state store (whose key namespace follows the model's feature layout
    and scalers)."""
    layout = OnlineFeatures(model.bundle.pipeline, window=model.bundle.window)
    store = make_state_store(settings, decode=layout.decode_state, fingerprint=layout.fingerprint)
    return Predictor(model.bundle, store, model_name=model.name, model_version=model.version)


def champion_version(settings: Settings, name: str) -> str | None:
    from prognos.registry import versions
    from prognos.registry.tracking import connect

    current = versions.champion(connect(settings), name)
    return None if current is None else str(current.version)


@dataclass
class Runtime:
    settings: Settings
    telemetry: Telemetry = field(default_factory=Telemetry)
    db: Database | None = None
    writer: RecordWriter | None = None
    scorer: Scorer | None = None
    model: ServedModel | None = None
    batcher: Batcher | None = None
    keys: KeyCache | None = None
    limiter: RateLimiter | None = None
    started: float = field(default_factory=time.monotonic)
    registry_ok: bool = False
    registry_error: str | None = None
    compute_error: str | None = None
    model_name: str | None = None
    _redis: Any = None
    _poller: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _side: ThreadPoolExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, model: LoadedModel | None = None) -> None:
        settings = self.settings
        settings.ensure_home()
        self.db = Database(database_url(settings))
        try:
            await asyncio.to_thread(self.db.upgrade)
        except PrognosError as exc:
            log.warning("database not ready at start-up (%s); predictions are spooled", exc)
        self.writer = RecordWriter(self.db, settings.home / "spool")
        self.writer.start()
        self.keys = KeyCache(self._verify_key)
        if settings.redis_url is not None:
            import redis

            self._redis = redis.Redis.from_url(
                settings.redis_url.get_secret_value(), socket_timeout=0.25,
                socket_connect_timeout=0.25,
            )  # fmt: skip
        self.limiter = RateLimiter(
            settings.rate_limit_per_minute, self._redis, prefix=settings.redis_namespace
        )
        self._wake = asyncio.Event()
        self.batcher = Batcher(
            lambda: self.scorer,
            on_batch=self.telemetry.on_batch,
            on_accepted=self._store_reading,
            on_lost=self._wake.set,
        )
        await self.batcher.start()
        self.model_name = model.name if model is not None else settings.model_name
        if model is not None:
            await self.install(model.name, model.version, model)
        elif self.model_name is not None:
            await self.reload()
        self._poller = asyncio.create_task(self._poll(), name="prognos-model-poller")
        self.audit("service", "started", self.model_name or "", {"pid": os.getpid()})

    async def stop(self) -> None:
        gc.unfreeze()
        if self._poller is not None:
            self._poller.cancel()
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
        if self._redis is not None:
            self._redis.close()
        self.telemetry.close()

    # -- the model -----------------------------------------------------------------------------

    def _make_scorer(self, name: str, version: str, model: LoadedModel | None) -> Scorer:
        """A compute process for a registered version (the default), else the model in this
        process (``PROGNOS_COMPUTE_PROCESS=false``, or a model handed over already loaded)."""
        if model is None and self.settings.compute_process:
            from prognos.serving.compute import ProcessScorer

            return ProcessScorer(self.settings, name, version)
        if model is None:
            model = load_model(self.settings, name, version)
        if self._side is None:
            self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prognos-explain")
        return LocalScorer(build_predictor(self.settings, model), side=self._side, db=self.db)

    async def install(self, name: str, version: str, model: LoadedModel | None = None) -> None:
        """Load, seed and swap in ``name``/``version`` without losing a reading.

        Readings keep arriving while the new state is seeded from the readings table. The
        batcher journals them from a point where everything accepted before is queued for the
        database; the writer is flushed, the table read, and the journal replayed into the new
        state on the compute thread, where the swap then happens between two batches. So every
        reading this process accepted is in the new state once, and requests in flight finish on
        the model they started with.

        With several workers sharing Redis each polls and swaps on its own, so one may still
        accept readings on the old model after another built the new model's states. The seed
        (and, for journaled readings the other worker overtook, a second seed after the swap)
        rebuilds such assets from the stored readings; see ``OnlineFeatures.seed_states``. What
        stays open is a reading still in another worker's writer queue at that moment
        (milliseconds): its asset's state is then left as it is.
        """
        assert self.batcher is not None
        batcher = self.batcher
        scorer = await asyncio.to_thread(self._make_scorer, name, version, model)
        try:
            await batcher.run_in_compute_thread(batcher.start_journal)
            try:
                if self.writer is not None:
                    await asyncio.to_thread(self.writer.flush, 30.0)
                seeded = await asyncio.to_thread(scorer.seed)
            except BaseException:
                await batcher.run_in_compute_thread(batcher.stop_journal)
                raise
            previous = self.scorer

            def catch_up_and_swap() -> tuple[int, int]:
                counts = scorer.replay(batcher.stop_journal())
                self.scorer, self.model = scorer, scorer.model  # between two batches
                return counts

            replayed, behind = await batcher.run_in_compute_thread(catch_up_and_swap)
        except BaseException:
            await asyncio.to_thread(scorer.close)
            raise
        repaired = 0
        if behind:
            # Another worker sharing the store advanced these assets on the new model while
            # this one journaled readings on the old: they are stored now, so rebuild the
            # assets from the table (between batches: the state is not thread-safe here).
            if self.writer is not None:
                await asyncio.to_thread(self.writer.flush, 30.0)
            repaired = await batcher.run_in_compute_thread(scorer.seed)
        self.registry_ok, self.registry_error = True, None
        self.telemetry.set_model(name, version)
        pid = scorer.pid
        self.audit(
            "service",
            "model_loaded",
            f"{name}/{version}",
            {
                "previous": None if previous is None else previous.model.version,
                "seeded": seeded,
                "replayed": replayed,
                "repaired": repaired,
                "compute_pid": pid,
            },
        )
        log.info("serving %s version %s in process %d (%d asset states seeded, %d readings "
                 "replayed)", name, version, pid, seeded, replayed)  # fmt: skip
        if previous is not None:
            await asyncio.to_thread(previous.close)
        del previous
        settle_heap()

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
        while True:
            # Woken early when the compute process was lost, to start a new one at once; while
            # one fails to start, tried again every few seconds rather than every poll.
            wait = self.settings.model_poll_seconds
            if self.compute_error is not None:
                wait = min(wait, COMPUTE_RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            await self.reload()

    # -- keys, audit, health -------------------------------------------------------------------

    def _store_reading(self, reading: Mapping[str, Any], asset: str, when: int) -> None:
        """Queue an accepted reading for the database (on the compute thread, see install)."""
        if self.writer is not None:
            self.writer.submit("reading", reading_log_row(reading, asset, when), normalised=True)

    def _verify_key(self, key: str) -> Principal | None:
        assert self.db is not None
        info = repository.verify_api_key(self.db, key)
        if info is None:
            return None
        return Principal(info.name, frozenset(info.scopes), info.rate_limit_per_minute)

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

    def health(self) -> dict[str, Any]:
        services: dict[str, str] = {}
        detail: dict[str, Any] = {}
        if self.writer is not None:
            status = self.writer.status()
            services["database"] = "ok" if status["database"] == "ok" else "down"
            detail["log_records"] = {"queued": status["queued"], "spooled": status["spooled"]}
            self.telemetry.spooled.set(status["spooled"])
        if self._redis is not None:
            try:
                store_ok = bool(self._redis.ping())
            except Exception:
                store_ok = False
        else:
            store_ok = True  # in the memory of the process that serves the model
        services["state_store"] = "ok" if store_ok else "down"
        services["state_backend"] = "redis" if self.settings.redis_url is not None else "memory"
        services["registry"] = "ok" if self.registry_ok else "down"
        if self.registry_error:
            detail["registry_error"] = self.registry_error
        services["compute"] = "ok" if self.compute_ok() else "down"
        if self.compute_error:
            detail["compute_error"] = self.compute_error
        if self.scorer is not None:
            services["compute_mode"] = self.scorer.mode
        for name in ("database", "state_store", "registry", "compute"):
            self.telemetry.dependency.labels(name).set(1 if services.get(name) == "ok" else 0)
        model = self.model
        degraded = model is None or any(
            services[n] != "ok" for n in ("database", "state_store", "registry", "compute")
        )
        return {
            "status": "degraded" if degraded else "ok",
            "model_loaded": model is not None,
            "model_name": None if model is None else model.name,
            "model_version": None if model is None else model.version,
            "uptime_seconds": time.monotonic() - self.started,
            "services": services,
            "detail": detail,
        }
