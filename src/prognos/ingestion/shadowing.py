"""Following the ``challenger`` alias: one ingestion core's :class:`Shadowing` starts a
:class:`~prognos.ingestion.shadow.Shadow` for a new challenger and stops it when the alias goes or
names the champion, auditing both; the core calls only this (offers, ``follow``, ``close``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prognos.config import Settings
from prognos.ingestion.compute import ProcessScorer
from prognos.ingestion.loading import (
    build_predictor,
    challenger_version,
    load_model,
    settle_heap,
)
from prognos.ingestion.predictor import Prediction
from prognos.ingestion.scoring import LocalScorer, Scorer
from prognos.ingestion.shadow import Shadow
from prognos.storage.database import Database
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.shadow")

# What the audit log keeps of a shadow when it stops.
STOP_FIGURES = ("scored", "requested", "missed", "dropped", "rejected", "queued", "seeds",
                "failures", "seconds", "error")  # fmt: skip
Audit = Callable[[str, str, str, dict[str, Any]], None]


class Shadowing:
    """Follows the ``challenger`` alias for one ingestion core and holds at most one
    :class:`Shadow`; what the core calls (offers, :meth:`follow`, :meth:`close`)."""

    def __init__(
        self, settings: Settings, *, writer: RecordWriter, db: Database | None, audit: Audit
    ) -> None:
        self.settings = settings
        self.shadow: Shadow | None = None
        self._writer = writer
        self._db = db
        self._audit = audit
        self._retired = {"scored": 0, "dropped": 0}  # stopped shadows' figures (for /metrics)

    def offer_reading(self, reading: Mapping[str, Any], asset: str, when: int) -> None:
        shadow = self.shadow
        if shadow is not None:
            shadow.offer_reading(reading, asset, when)

    def offer_score(self, prediction: Prediction) -> None:
        shadow = self.shadow
        if shadow is not None:
            shadow.offer_score(prediction)

    async def follow(self, name: str, champion: str | None, fleet: str) -> None:
        """Start a shadow for a new challenger, stop one whose alias is gone or now names the
        champion; a registry that cannot be asked leaves things as they are."""
        try:
            version = await asyncio.to_thread(challenger_version, self.settings, name)
        except Exception as exc:
            log.warning("challenger check failed: %s", exc)
            return
        if champion is None or version == champion:
            version = None
        current = self.shadow
        if current is not None and current.version == version:
            return
        try:
            if current is not None:
                reason = "no challenger" if version is None else f"challenger is now {version}"
                await self._stop(current, reason if champion != current.version else "promoted")
            if version is not None:
                self._start(name, version, champion, fleet)
        except Exception:  # a bug here must not stop the poller that follows the champion
            log.exception("the shadow of %s/%s could not be started or stopped", name, version)

    async def close(self) -> None:
        if self.shadow is not None:
            await self._stop(self.shadow, "service stopped")

    def status(self) -> dict[str, Any] | None:
        return None if self.shadow is None else self.shadow.status()

    def wait_idle(self, timeout: float) -> bool:
        """See :meth:`Shadow.wait_idle`; True without a shadow."""
        return True if self.shadow is None else self.shadow.wait_idle(timeout)

    def totals(self) -> dict[str, int]:
        """Scored and dropped events since start-up, every shadow of this process together."""
        current = self.shadow.status() if self.shadow is not None else {}
        return {k: v + int(current.get(k, 0)) for k, v in self._retired.items()}

    def _start(self, name: str, version: str, champion: str | None, fleet: str) -> None:
        settings = self.settings.model_copy(
            update={"fleet": fleet, "redis_namespace": f"{self.settings.redis_namespace}:shadow"}
        )
        shadow = Shadow(
            name,
            version,
            make_scorer=lambda: make_scorer(settings, name, version, self._db),
            writer=self._writer,
            fleet=fleet,
            queue_max=settings.shadow_queue_max,
        )
        self.shadow = shadow
        shadow.start()
        mode = "process" if settings.compute_process else "thread"
        self._audit("service", "shadow.started", f"{name}/{version}",
                    {"champion": champion, "compute_mode": mode,
                     "queue_max": settings.shadow_queue_max})  # fmt: skip
        log.info("shadowing %s/%s (champion %s)", name, version, champion)

    async def _stop(self, shadow: Shadow, reason: str) -> None:
        self.shadow = None
        await asyncio.to_thread(shadow.stop)
        figures = shadow.status()
        for key in self._retired:
            self._retired[key] += int(figures[key])
        details = {k: figures[k] for k in STOP_FIGURES}
        self._audit("service", "shadow.stopped", f"{shadow.name}/{shadow.version}",
                    {**details, "reason": reason})  # fmt: skip
        log.info("shadow of %s/%s stopped (%s): %d scored, %d dropped", shadow.name,
                 shadow.version, reason, figures["scored"], figures["dropped"])  # fmt: skip


def make_scorer(settings: Settings, name: str, version: str, db: Database | None) -> Scorer:
    """The challenger's scorer: a compute process, or the model in this process."""
    if settings.compute_process:
        return ProcessScorer(settings, name, version)
    predictor = build_predictor(settings, load_model(settings, name, version))
    settle_heap()  # out of the full collections' reach, as the champion's model is
    assert settings.fleet is not None
    return LocalScorer(predictor, db=db, fleet=settings.fleet)
