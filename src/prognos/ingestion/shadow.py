"""The challenger's shadow: every live prediction scored again by the ``challenger`` version and
logged with ``shadow = true`` for the promotion gate; never returned, never in the champion's way.

- **Its own scorer and state.** A compute process of its own by default (its own GIL, and under
  ``SCHED_IDLE``: on a core only when nothing else wants it), or this process with
  ``PROGNOS_COMPUTE_PROCESS=false``. Its online state is in process, or in Redis under
  ``<namespace>:shadow``: with the champion's layout it would otherwise share the champion's keys,
  and every reading would be a duplicate to one of the two.
- **Fed in order, off the hot path.** The champion's compute thread appends each accepted reading
  (right after queueing it for the database) and the event loop a "score this asset at this
  time" for each logged prediction: an append to a bounded queue, nothing more. A worker thread
  drains it in batches (a reading and its score request are one ``predict`` item, scored
  without TreeSHAP) and hands each prediction to the writer. A score request whose asset took
  later readings before it was queued is moved right after its own reading, and a prediction is
  logged only when the state is at exactly that reading (else counted ``missed``).
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
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
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
from prognos.ingestion.scoring import Kind, LocalScorer, Outcome, Scorer, Work
from prognos.storage.database import Database
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.shadow")

BATCH_MAX = 2000  # events per scorer call
LINGER_SECONDS = 0.25  # a batch gathers events this long: fewer, larger calls (see below)
SEED_WAIT_SECONDS = 30.0
SETTLE_SECONDS = 1.0  # how old an event must be before the shadow takes it (see _take)
STATE_RETRY_SECONDS = 1.0
RETRY_SECONDS = (5.0, 60.0)  # after a failure: first retry, then doubling up to the second
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


def jobs(events: Sequence[Event]) -> list[tuple[Kind, list[list[Event]]]]:
    """Ordered events as scorer jobs, consecutive items of a kind together: a reading followed
    by its own score request is one ``predict`` item (its features are computed once, not by
    ``ingest`` and again by ``current``), another reading ``ingest``, another request
    ``current``. Each item is its events: the last one is the score request, if any."""
    out: list[tuple[Kind, list[list[Event]]]] = []
    i = 0
    while i < len(events):
        event = events[i]
        after = events[i + 1] if i + 1 < len(events) else None
        kind: Kind
        if event[0] == "score":
            kind, group = "current", [event]
        elif after is not None and after[0] == "score" and after[1:3] == event[2:4]:
            kind, group = "predict", [event, after]
        else:
            kind, group = "ingest", [event]
        i += len(group)
        if out and out[-1][0] == kind:
            out[-1][1].append(group)
        else:
            out.append((kind, [group]))
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
        self._offered: collections.deque[float] = collections.deque()  # when each was queued
        self._cond = threading.Condition()
        self._accepting = True  # False while down: offers are dropped (the restart reseeds)
        self._reseed = False
        self._inflight = 0  # events taken off the queue and not yet scored
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
                self._offered.clear()
                self._reseed = True
                self._cond.notify()
            else:
                self._queue.append(event)
                self._offered.append(time.monotonic())
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

    def wait_idle(self, timeout: float) -> bool:
        """Block until every event offered so far is scored (True), or ``timeout`` passes or the
        shadow is down (False): for a caller about to stop that wants the shadow's predictions
        logged first (the loop demo, tests). The service never waits on it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight or self.state != "ok":
                left = deadline - time.monotonic()
                if left <= 0 or self.state in ("down", "stopped"):
                    return False
                self._cond.wait(min(left, 0.1))
        return True

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
                try:
                    self._score(scorer, batch)
                finally:
                    with self._cond:
                        self._inflight = 0
                        self._cond.notify_all()

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
            # Only events queued SETTLE_SECONDS ago: a prediction's score request is offered
            # after its batch is durable, when the asset's next readings may be queued already;
            # taken too early, the state would have moved past the reading it must be scored at
            # (measured: 99 of 111 requests missed on the loop demo's stream without it).
            ripe = time.monotonic() - SETTLE_SECONDS
            take = 0
            while take < min(len(self._queue), BATCH_MAX) and self._offered[take] <= ripe:
                take += 1
            if take == 0:
                self._cond.wait(SETTLE_SECONDS / 4)
                return []
            batch = [self._queue.popleft() for _ in range(take)]
            for _ in range(take):
                self._offered.popleft()
            self._inflight = len(batch)
            return batch

    def _score(self, scorer: Scorer, batch: list[Event]) -> None:
        planned = jobs(ordered(batch))
        work: list[Work] = [
            (kind, [group[0][1] for group in groups], False) for kind, groups in planned
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
        for (kind, groups), outcomes in zip(planned, result.outcomes, strict=True):
            for group, outcome in zip(groups, outcomes, strict=True):
                error = outcome.error
                if kind != "current" and isinstance(error, StateStoreError):
                    lost = True  # the state may lack this reading now
                elif kind == "ingest" and error is not None:
                    # A repeat (or older) after a seed is expected; anything else is refused.
                    rejected += not isinstance(error, ReadingRejectedError)
                if kind == "ingest":
                    continue
                row = self._row(group[-1], outcome)
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
            self._offered.clear()
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
    """Run a process (each of its threads) under ``SCHED_IDLE``: on a busy machine it gets a core
    only when nothing else wants one, and a waking champion thread takes the core at once. A
    lower nice value alone was not enough (measured): the scheduler lets a running task finish
    its slice first. Where ``SCHED_IDLE`` is refused, the nice value is raised instead."""
    try:
        threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        threads = [pid]
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, 19)


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
