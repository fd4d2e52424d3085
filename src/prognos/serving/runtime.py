"""What one service process holds: the model being served, its state store, the database writer,
the batcher and the metrics; built in the app's lifespan, never at import.

The model follows the registry's ``champion`` alias: a background task polls it and, when it
moves, loads the new version off the event loop, seeds its online state from the stored readings
and swaps it in with one assignment. Requests in flight finish on the model they started with.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prognos.config import Settings
from prognos.errors import DuplicateReadingError, OutOfOrderReadingError, PrognosError
from prognos.features.online import OnlineFeatures
from prognos.features.stores import make_state_store
from prognos.models.bundle import ModelBundle
from prognos.serving.batching import Batcher
from prognos.serving.predictor import Predictor, Scored, reading_log_row
from prognos.serving.security import KeyCache, Principal, RateLimiter
from prognos.serving.telemetry import Telemetry
from prognos.storage import repository
from prognos.storage.database import Database, database_url
from prognos.storage.history import readings_frame
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.serving")


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


def load_champion(settings: Settings, name: str) -> LoadedModel:
    """The champion version's bundle, loaded by its number so we know exactly what we serve."""
    import mlflow

    from prognos.registry import versions
    from prognos.registry.tracking import connect

    client = connect(settings)
    current = versions.champion(client, name)
    if current is None:
        raise versions.RegistryError(f"registered model {name!r} has no champion")
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{current.version}")
    except Exception as exc:  # MLflow raises many types for a store or artifact problem
        raise versions.RegistryError(
            f"cannot load {name} version {current.version}: {exc}"
        ) from exc
    bundle = model.unwrap_python_model().bundle
    return LoadedModel(bundle=bundle, name=name, version=str(current.version))


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
    predictor: Predictor | None = None
    batcher: Batcher | None = None
    keys: KeyCache | None = None
    limiter: RateLimiter | None = None
    started: float = field(default_factory=time.monotonic)
    registry_ok: bool = False
    registry_error: str | None = None
    model_name: str | None = None
    _redis: Any = None
    _poller: asyncio.Task[None] | None = None

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
        self.batcher = Batcher(
            lambda: self.predictor,
            on_batch=self.telemetry.on_batch,
            on_accepted=self._store_reading,
        )
        await self.batcher.start()
        self.model_name = model.name if model is not None else settings.model_name
        if model is not None:
            await self.install(model)
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
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close, 10.0)
        if self.db is not None:
            self.db.dispose()
        if self._redis is not None:
            self._redis.close()
        self.telemetry.close()

    # -- the model -----------------------------------------------------------------------------

    def _make_predictor(self, model: LoadedModel) -> Predictor:
        # The store's key namespace depends on the model's feature layout and scalers.
        layout = OnlineFeatures(model.bundle.pipeline, window=model.bundle.window)
        store = make_state_store(
            self.settings, decode=layout.decode_state, fingerprint=layout.fingerprint
        )
        return Predictor(model.bundle, store, model_name=model.name, model_version=model.version)

    def _seed(self, predictor: Predictor) -> int:
        """Rebuild state for assets the store does not know, from the readings table."""
        if self.db is None:
            return 0
        try:
            frame = readings_frame(self.db)
        except PrognosError as exc:
            log.warning("cannot seed online state from the database: %s", exc)
            return 0
        if frame.empty:
            return 0
        try:
            return predictor.online.seed_states(frame)
        except (PrognosError, KeyError) as exc:
            log.warning("stored readings do not fit model %s: %s", predictor.model_version, exc)
            return 0

    async def install(self, model: LoadedModel) -> None:
        """Build, seed and swap in a predictor for ``model`` without losing a reading.

        Readings keep arriving while the new state is seeded from the readings table. The
        batcher journals them from a point where everything accepted before is queued for the
        database; the writer is flushed, the table read, and the journal replayed into the new
        state on the compute thread, where the swap then happens between two batches. So every
        reading this process accepted is in the new state once, and requests in flight finish on
        the model they started with. (With several workers each journals its own readings; a
        reading another worker accepted in the last moments before the seed may be missing
        from the new state until that asset's next reading.)
        """
        assert self.batcher is not None
        batcher = self.batcher
        predictor = await asyncio.to_thread(self._make_predictor, model)
        await batcher.run_in_compute_thread(batcher.start_journal)
        try:
            if self.writer is not None:
                await asyncio.to_thread(self.writer.flush, 30.0)
            seeded = await asyncio.to_thread(self._seed, predictor)
        except BaseException:
            await batcher.run_in_compute_thread(batcher.stop_journal)
            raise
        previous = self.predictor

        def catch_up_and_swap() -> int:
            replayed = 0
            for reading in batcher.stop_journal():
                try:
                    predictor.ingest(reading)
                    replayed += 1
                except (DuplicateReadingError, OutOfOrderReadingError):
                    pass  # the seed already had it from the table
                except PrognosError as exc:  # the state store is away: say so, keep going
                    log.warning("reading not carried over to the new model: %s", exc)
            self.predictor = predictor  # one assignment, between two batches
            return replayed

        replayed = await batcher.run_in_compute_thread(catch_up_and_swap)
        self.registry_ok, self.registry_error = True, None
        self.telemetry.set_model(model.name, model.version)
        self.audit(
            "service",
            "model_loaded",
            f"{model.name}/{model.version}",
            {
                "previous": None if previous is None else previous.model_version,
                "seeded": seeded,
                "replayed": replayed,
            },
        )
        log.info("serving %s version %s (%d asset states seeded, %d readings replayed)",
                 model.name, model.version, seeded, replayed)  # fmt: skip
        del previous
        settle_heap()

    async def reload(self) -> bool:
        """Load the champion if it is not what we serve; True when a new model was installed."""
        name = self.model_name
        if name is None:
            return False
        try:
            version = await asyncio.to_thread(champion_version, self.settings, name)
            self.registry_ok, self.registry_error = True, None
            if version is None and self.predictor is None:
                self.registry_error = f"registered model {name!r} has no champion (yet)"
            if version is None or (
                self.predictor is not None and self.predictor.model_version == version
            ):
                return False
            model = await asyncio.to_thread(load_champion, self.settings, name)
        except Exception as exc:  # registry away: keep serving what we have, say so in /health
            self.registry_ok, self.registry_error = False, str(exc)[:300]
            log.warning("registry check failed: %s", exc)
            return False
        await self.install(model)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_seconds)
            await self.reload()

    # -- keys, audit, health -------------------------------------------------------------------

    def _store_reading(self, reading: Mapping[str, Any], scored: Scored) -> None:
        """Queue an accepted reading for the database (on the compute thread, see install)."""
        if self.writer is not None:
            self.writer.submit("reading", reading_log_row(reading, scored), normalised=True)

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
        if self.predictor is not None:
            store_ok = self.predictor.store.ping()
        elif self._redis is not None:
            try:
                store_ok = bool(self._redis.ping())
            except Exception:
                store_ok = False
        else:
            store_ok = True
        services["state_store"] = "ok" if store_ok else "down"
        services["state_backend"] = "redis" if self.settings.redis_url is not None else "memory"
        services["registry"] = "ok" if self.registry_ok else "down"
        if self.registry_error:
            detail["registry_error"] = self.registry_error
        for name in ("database", "state_store", "registry"):
            self.telemetry.dependency.labels(name).set(1 if services.get(name) == "ok" else 0)
        degraded = self.predictor is None or any(
            services[n] != "ok" for n in ("database", "state_store", "registry")
        )
        return {
            "status": "degraded" if degraded else "ok",
            "model_loaded": self.predictor is not None,
            "model_name": None if self.predictor is None else self.predictor.model_name,
            "model_version": None if self.predictor is None else self.predictor.model_version,
            "uptime_seconds": time.monotonic() - self.started,
            "services": services,
            "detail": detail,
        }
