"""Coalescing concurrent requests into one model call.

Every request's work (state updates, then scoring) runs on one dedicated compute thread. While a
batch is being scored, new requests queue; the next batch takes all of them. Under light load a
batch is one request and waits for nothing; under heavy load each member runs once per batch
instead of once per request (TreeSHAP of 100 rows costs a fraction of 100 single-row calls). The
event loop never runs model code or blocking Redis calls, so it keeps accepting connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prognos.errors import StateStoreError
from prognos.ingestion.predictor import Prediction
from prognos.ingestion.scoring import ComputeLostError, Kind, NoModelError, Outcome, Scorer

log = logging.getLogger("prognos.serving")


@dataclass
class Job:
    """One request's items: readings to ingest (and score), or assets to score or look up.

    ``log``: queue each prediction for the database on the compute thread (see ``on_scored``),
    with its latency since ``submitted`` (``time.perf_counter``).
    """

    kind: Kind
    items: Sequence[Any]
    explain: bool = True
    future: asyncio.Future[list[Outcome]] | None = None
    log: bool = False
    submitted: float = field(default_factory=time.perf_counter)


def raise_unavailable(outcomes: Sequence[Outcome]) -> None:
    """A dependency outage is the request's failure (503), not one item's."""
    for outcome in outcomes:
        if isinstance(outcome.error, StateStoreError | NoModelError):
            raise outcome.error


class Batcher:
    """Runs jobs on one compute thread, all queued jobs of a moment as one batch.

    The thread hands each batch to the current :class:`Scorer` (in this process, or a call to the
    compute process, which then does the work while this thread waits without the GIL).
    """

    def __init__(
        self,
        scorer: Callable[[], Scorer | None],
        *,
        max_items: int = 512,
        on_batch: Callable[[int, float], None] | None = None,
        on_accepted: Callable[[Mapping[str, Any], str, int], None] | None = None,
        on_scored: Callable[[Prediction, float], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        on_unready: Callable[[], None] | None = None,
    ) -> None:
        self._scorer = scorer
        self._max_items = max_items
        self._on_batch = on_batch
        # Called on the compute thread for each newly accepted reading (with its asset and time
        # keys), in the order the state took them, before the next batch: the service queues
        # the reading for the database here, so that "in the state" and "queued to be stored"
        # happen on one thread before anything else (see start_journal).
        self._on_accepted = on_accepted
        self._journal: list[Mapping[str, Any]] | None = None
        # Called on the compute thread for each prediction of a ``log`` job, with its latency
        # (ms), after the batch's readings were queued: the service queues the prediction's log
        # row here rather than on the event loop once the request resumes, so that a request's
        # reading and prediction reach the writer together (one commit, not two, when load is
        # light) and the event loop has less to do.
        self._on_scored = on_scored
        # Called (on the event loop) when the scorer's compute process was found gone.
        self._on_lost = on_lost
        # Called (on the event loop) when a batch found the online state not ready (to rebuild).
        self._on_unready = on_unready
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prognos-compute")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="prognos-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(
        self, kind: Kind, items: Sequence[Any], *, explain: bool = True, log: bool = False
    ) -> list[Outcome]:
        """The items' outcomes; with ``log``, each prediction is also queued for the database
        (``on_scored``) and its ``latency_ms`` set."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not awaited")
        job = Job(kind, items, explain, asyncio.get_running_loop().create_future(), log)
        await self._queue.put(job)
        assert job.future is not None
        return await job.future

    async def run_in_compute_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Other work that touches the predictor's state (it is not thread-safe to interleave)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def start_journal(self) -> None:
        """From now on, also keep every accepted reading (call on the compute thread).

        A model swap seeds the new model's state from the stored readings, which takes a while;
        the journal holds what arrives meanwhile, to be replayed before the swap.
        """
        self._journal = []

    def stop_journal(self) -> list[Mapping[str, Any]]:
        """The readings accepted since :meth:`start_journal`, in order (call on the compute
        thread); journaling stops."""
        journal, self._journal = self._journal or [], None
        return journal

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].items)
            while size < self._max_items and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += len(job.items)
            try:
                results, ready = await loop.run_in_executor(self._executor, self._process, jobs)
            except Exception as exc:  # a bug, or the compute process is gone: fail these jobs
                if isinstance(exc, ComputeLostError) and self._on_lost is not None:
                    self._on_lost()
                for job in jobs:
                    if job.future is not None and not job.future.done():
                        job.future.set_exception(exc)
                continue
            if not ready and self._on_unready is not None:
                self._on_unready()
            for job, outcome in zip(jobs, results, strict=True):
                if job.future is not None and not job.future.done():
                    job.future.set_result(outcome)

    def _process(self, jobs: list[Job]) -> tuple[list[list[Outcome]], bool]:
        start = time.perf_counter()
        scorer = self._scorer()
        if scorer is None:
            error = NoModelError("no model is loaded yet; see /health")
            return [[Outcome(error=error) for _ in job.items] for job in jobs], True
        result = scorer.process([(job.kind, job.items, job.explain) for job in jobs])
        for j, i, asset, when in result.accepted:
            reading = jobs[j].items[i]
            if self._journal is not None:
                self._journal.append(reading)
            if self._on_accepted is not None:
                try:
                    self._on_accepted(reading, asset, when)
                except Exception:  # the state has it; failing the request now would not undo that
                    log.exception("accepted reading of %s could not be queued for storage", asset)
        self._log_predictions(jobs, result.outcomes)
        if self._on_batch is not None:
            self._on_batch(sum(len(j.items) for j in jobs), time.perf_counter() - start)
        return result.outcomes, result.ready

    def _log_predictions(self, jobs: list[Job], outcomes: list[list[Outcome]]) -> None:
        if self._on_scored is None:
            return
        now = time.perf_counter()
        for job, row in zip(jobs, outcomes, strict=True):
            if not job.log:
                continue
            latency = (now - job.submitted) * 1000.0
            for outcome in row:
                if outcome.prediction is None:
                    continue
                outcome.latency_ms = latency
                try:
                    self._on_scored(outcome.prediction, latency)
                except Exception as exc:  # not logged, so not answered either (HTTP 500)
                    log.exception(
                        "prediction for %s could not be logged", outcome.prediction.asset_id
                    )
                    outcome.prediction, outcome.error = None, exc
