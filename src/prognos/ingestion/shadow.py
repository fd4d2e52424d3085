"""The challenger's shadow: every live prediction scored again by the ``challenger`` version and
logged with ``shadow = true`` for the promotion gate; never returned, never in the champion's way.

- **Its own scorer and state.** A compute process of its own by default (its own GIL; its main
  thread, which does the scoring, runs at a lower CPU priority), or this process with
  ``PROGNOS_COMPUTE_PROCESS=false``. Its online state is in process, or in Redis under
  ``<namespace>:shadow``: with the champion's layout it would otherwise share the champion's keys,
  and every reading would be a duplicate to one of the two.
- **Fed in order, off the hot path.** The champion's compute thread appends each accepted reading
  (right after queueing it for the database) and the event loop a "score this asset at this
  time" for each logged prediction: an append to a bounded queue, nothing more. A worker thread
  drains it in batches (readings ingested, then the requested assets scored, without TreeSHAP)
  and hands each prediction to the writer. A score request whose asset took later readings
  before it was queued is moved right after its own reading, and a prediction is logged only
  when the state is at exactly that reading (else counted ``missed``).
- **Right or rebuilt.** When the queue overflows (``PROGNOS_SHADOW_QUEUE_MAX``), the state is
  not ready, or the state store failed an update, the backlog is dropped and counted and the
  state rebuilt from the stored readings as the champion's is (``writer.wait_replayed``, then
  ``seed``): every dropped reading was handed to the writer before it was queued here, so the
  table holds it by then. Readings queued meanwhile are folded in after (repeats are skipped).
- **Failures stay here.** A process that dies or a version that cannot load is logged, counted,
  shown in ``/health`` and retried with backoff; the champion's path never waits on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from prognos.config import Settings
from prognos.errors import ReadingRejectedError, StateStoreError, StorageUnavailableError
from prognos.ingestion.compute import ProcessScorer
from prognos.ingestion.loading import (
    build_predictor,
    challenger_version,
    load_model,
    settle_heap,
)
from prognos.ingestion.predictor import Prediction
from prognos.ingestion.scoring import LocalScorer, Outcome, Scorer, Work
from prognos.storage.database import Database
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.shadow")

BATCH_MAX = 2000  # events per scorer call
LINGER_SECONDS = 0.25  # a batch gathers events this long: fewer, larger calls (see below)
SEED_WAIT_SECONDS = 30.0
STATE_RETRY_SECONDS = 1.0
RETRY_SECONDS = (5.0, 60.0)  # after a failure: first retry, then doubling up to the second
NICE = 10  # added to the shadow compute process's nice value
# What the audit log keeps of a shadow when it stops.
STOP_FIGURES = ("scored", "requested", "missed", "dropped", "rejected", "queued", "seeds",
                "failures", "seconds", "error")  # fmt: skip
_SHADOW_IDS = uuid.UUID("0b5e2f1c-7d4a-4e8b-9c3f-736861646f77")  # uuid5 namespace of row ids

# ("reading", reading, asset, time) or ("score", asset, time, created_at of the champion's)
Event = tuple[str, Any, Any, Any]
Audit = Callable[[str, str, str, dict[str, Any]], None]


def shadow_id(prediction: Prediction) -> str:
    """The row id of a shadow prediction: fixed for a version, asset and time (logged once),
    and never the id the same version's prediction gets once it is champion."""
    return f"pred_{uuid.uuid5(_SHADOW_IDS, prediction.prediction_id).hex}"


def ordered(events: Sequence[Event]) -> list[Event]:
    """``events`` with each score request right after its own reading when that reading is
    among them (later readings of the asset may have been queued before the request), and
    repeated requests left out."""
    position = {(e[2], e[3]): i for i, e in enumerate(events) if e[0] == "reading"}
    after: dict[int, list[Event]] = collections.defaultdict(list)
    moved: set[int] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, event in enumerate(events):
        if event[0] != "score":
            continue
        key = (event[1], event[2])
        at = position.get(key)
        if key in seen:
            moved.add(i)
        elif at is not None and at < i:
            after[at].append(event)
            moved.add(i)
        seen.add(key)
    out: list[Event] = []
    for i, event in enumerate(events):
        if i not in moved:
            out.append(event)
        out.extend(after.get(i, ()))
    return out


class Shadow:
    """One challenger version scored in the champion's shadow (see the module docstring).

    ``offer_*`` are called on the champion's threads and only append; everything else happens
    on the shadow's worker thread, which builds the scorer (``make_scorer``), seeds its state
    and drains the queue until :meth:`stop`.
    """

    def __init__(
        self,
        name: str,
        version: str,
        *,
        make_scorer: Callable[[], Scorer],
        writer: RecordWriter,
        fleet: str,
        queue_max: int,
    ) -> None:
        self.name, self.version, self.fleet = name, version, fleet
        self._make_scorer = make_scorer
        self._writer = writer
        self._max = queue_max
        self._queue: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._accepting = True  # False while down: offers are dropped (the restart reseeds)
        self._reseed = False
        self._stop = threading.Event()
        self._scorer: Scorer | None = None
        self._thread = threading.Thread(target=self._run, name="prognos-shadow", daemon=True)
        self.started = time.monotonic()
        self.state = "starting"  # starting, seeding, ok, down, stopped
        self.error: str | None = None
        self.counts = dict.fromkeys(
            ("requested", "scored", "missed", "dropped", "rejected", "seeds", "failures"), 0
        )

    # -- the champion's side ---------------------------------------------------------------------

    def offer_reading(self, reading: Mapping[str, Any], asset: str, when: int) -> None:
        self._offer(("reading", reading, asset, when))

    def offer_score(self, prediction: Prediction) -> None:
        self._offer(("score", prediction.asset_id, prediction.time, prediction.created_at))

    def _offer(self, event: Event) -> None:
        with self._cond:
            if event[0] == "score":
                self.counts["requested"] += 1
            if not self._accepting:
                self.counts["dropped"] += 1
            elif len(self._queue) >= self._max:  # the backlog goes; the state is rebuilt
                self.counts["dropped"] += len(self._queue) + 1
                self._queue.clear()
                self._reseed = True
                self._cond.notify()
            else:
                self._queue.append(event)
                if len(self._queue) == 1:
                    self._cond.notify()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the worker and close the scorer (blocking: call it off the event loop)."""
        self._stop.set()
        with self._cond:
            self._accepting = False
            self._cond.notify_all()
        self._thread.join(timeout)
        scorer = self._scorer
        if self._thread.is_alive() and scorer is not None and scorer.mode == "process":
            with contextlib.suppress(OSError):  # stuck in a call: its answer will never come
                os.kill(scorer.pid, signal.SIGKILL)
            self._thread.join(5.0)

    def status(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._queue)
            counts = dict(self.counts)
        scorer = self._scorer
        return {
            "version": self.version,
            "state": self.state,
            "queued": queued,
            **counts,
            "compute_mode": None if scorer is None else scorer.mode,
            "pid": None if scorer is None else scorer.pid,
            "seconds": time.monotonic() - self.started,
            "error": self.error,
        }

    # -- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_SECONDS[0]
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                except Exception as exc:  # whatever it is, the champion must not notice
                    self._fail(exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, RETRY_SECONDS[1])
                    with self._cond:
                        self._accepting = not self._stop.is_set()  # queued for the next seed
                else:
                    delay = RETRY_SECONDS[0]
        finally:
            self._close_scorer()
            self.state = "stopped"

    def _serve(self) -> None:
        self.state = "starting"
        scorer = self._scorer = self._make_scorer()
        if scorer.mode == "process":
            lower_priority(scorer.pid)
        self._seed(scorer)
        while not self._stop.is_set():
            if self._reseed:
                self._seed(scorer)
                continue
            batch = self._take()
            if batch:
                self._score(scorer, batch)

    def _seed(self, scorer: Scorer) -> None:
        """Rebuild the state from the stored readings; events queued meanwhile stay queued."""
        self.state = "seeding"
        while not self._stop.is_set():
            with self._cond:
                self._reseed = False
            if self._writer.wait_replayed(SEED_WAIT_SECONDS):
                try:
                    seeded = scorer.seed()
                except (StorageUnavailableError, StateStoreError) as exc:
                    log.warning("shadow %s: state not rebuilt yet: %s", self.version, exc)
                else:
                    self.counts["seeds"] += 1
                    self.state, self.error = "ok", None
                    log.info("shadow of %s/%s seeded (%d asset states)", self.name,
                             self.version, seeded)  # fmt: skip
                    return
            self._stop.wait(STATE_RETRY_SECONDS)

    def _take(self) -> list[Event]:
        with self._cond:
            while not self._queue and not self._stop.is_set() and not self._reseed:
                self._cond.wait(1.0)
        if self._stop.is_set() or self._reseed:
            return []
        self._stop.wait(LINGER_SECONDS)  # let more events join this call
        with self._cond:
            if self._reseed:  # what is queued now came after the drop: it waits for the seed
                return []
            return [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]

    def _score(self, scorer: Scorer, batch: list[Event]) -> None:
        groups = itertools.groupby(ordered(batch), key=lambda e: e[0])
        jobs = [(kind, list(events)) for kind, events in groups]
        work: list[Work] = [
            ("ingest", [e[1] for e in events], False)
            if kind == "reading"
            else ("current", [e[1] for e in events], False)
            for kind, events in jobs
        ]
        try:
            result = scorer.process(work)
        except Exception:
            with self._cond:
                self.counts["dropped"] += len(batch)
            raise
        lost = not result.ready
        rows: list[dict[str, Any]] = []
        missed = rejected = 0
        for (kind, events), outcomes in zip(jobs, result.outcomes, strict=True):
            if kind == "reading":
                for outcome in outcomes:
                    if isinstance(outcome.error, StateStoreError):
                        lost = True  # the state may lack this reading now
                    elif outcome.error is not None and not isinstance(
                        outcome.error,
                        ReadingRejectedError,  # repeats after a seed
                    ):
                        rejected += 1
                continue
            for event, outcome in zip(events, outcomes, strict=True):
                row = self._row(event, outcome)
                if row is None:
                    missed += 1
                else:
                    rows.append(row)
        with self._cond:
            if lost:  # nothing from a state that may have diverged
                self.counts["dropped"] += len(batch)
                self._reseed = True
                return
            self.counts["missed"] += missed
            self.counts["rejected"] += rejected
            self.counts["scored"] += len(rows)
        for row in rows:
            self._writer.submit("prediction", row, normalised=True)

    def _row(self, event: Event, outcome: Outcome) -> dict[str, Any] | None:
        """The shadow prediction's row, or None when the state was not at the requested time."""
        prediction = outcome.prediction
        if prediction is None or prediction.time != event[2]:
            return None
        row = prediction.log_row(None, self.fleet, shadow=True)
        created_at: datetime = event[3]
        # The champion's time, so that both models' predictions fall in the same windows.
        row.update(id=shadow_id(prediction), created_at=created_at)
        return row

    def _fail(self, exc: Exception) -> None:
        with self._cond:
            self._accepting = False
            self.counts["dropped"] += len(self._queue)
            self._queue.clear()
            self.counts["failures"] += 1
        self.state, self.error = "down", f"{type(exc).__name__}: {exc}"[:300]
        log.warning("shadow of %s/%s failed (retrying): %s", self.name, self.version, self.error)
        self._close_scorer()

    def _close_scorer(self) -> None:
        scorer, self._scorer = self._scorer, None
        if scorer is not None:
            with contextlib.suppress(Exception):
                scorer.close()


def lower_priority(pid: int) -> None:
    """Raise a process's nice value by :data:`NICE`, so that the scheduler favours the champion
    when both want a core. On Linux this reaches the process's main thread (the one that scores;
    threads it starts later inherit it)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + NICE))


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
