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

Which version is shadowed, and when a shadow starts and stops, is
:mod:`prognos.ingestion.shadowing`; how queued events become scorer jobs is
:mod:`prognos.ingestion.shadow_jobs`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from prognos.errors import ReadingRejectedError, StateStoreError, StorageUnavailableError
from prognos.ingestion.predictor import Prediction
from prognos.ingestion.scoring import Outcome, Scorer, Work
from prognos.ingestion.shadow_jobs import Event, jobs, ordered
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.shadow")

BATCH_MAX = 2000  # events per scorer call
LINGER_SECONDS = 0.25  # a batch gathers events this long: fewer, larger calls (see below)
SEED_WAIT_SECONDS = 30.0
SETTLE_SECONDS = 1.0  # how old an event must be before the shadow takes it (see _take)
STATE_RETRY_SECONDS = 1.0
RETRY_SECONDS = (5.0, 60.0)  # after a failure: first retry, then doubling up to the second
_SHADOW_IDS = uuid.UUID("0b5e2f1c-7d4a-4e8b-9c3f-736861646f77")  # uuid5 namespace of row ids


def shadow_id(prediction: Prediction) -> str:
    """The row id of a shadow prediction: fixed for a version, asset and time (logged once),
    and never the id the same version's prediction gets once it is champion."""
    return f"pred_{uuid.uuid5(_SHADOW_IDS, prediction.prediction_id).hex}"


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
