"""Building ensemble members and fitting cross-validation's (fold, member) pairs.

Every (fold, member) fit of cross-validation is independent of the others. On a CPU with two or
more cores they run in ``jobs`` worker processes at once, each on one thread: a
step of the sequence network (FD001, batch 256) cost 28 ms of CPU on one thread and 42 ms on two
(measured as process CPU time on the 2-core VM), so two one-thread fits at once do about 1.5x
the work of one two-thread fit. Processes, not threads, because torch's thread count, random
generator and deterministic-algorithm flags are per process: two networks trained on threads of
one process would draw from one generator and overwrite each other's settings.

Small training sets stay in this process (starting the workers and importing torch there costs
seconds), and so does a network on CUDA (one GPU is not shared by two fits).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prognos.errors import TrainingError
from prognos.models.base import Member, ModelInput, Targets

__all__ = [
    "FinalTask",
    "FitPool",
    "FoldFit",
    "FoldTask",
    "cv_jobs",
    "make_member",
]

# Below this many training rows the fits run in this process whatever the cores: the test fleets
# and small demos train in seconds, less than starting two workers costs.
PARALLEL_MIN_ROWS = 10_000
# Parameters that set a member's threads, per member.
_THREAD_PARAMS = {"xgboost": "n_jobs", "forest": "n_jobs", "sequence": "threads"}


def make_member(name: str, params: dict[str, object], seed: int) -> Member:
    """A fresh, unfitted member with the configured parameters."""
    if name == "xgboost":
        from prognos.models.trees import GradientBoostedMember

        return GradientBoostedMember(**{"random_state": seed, **params})  # type: ignore[arg-type]
    if name == "forest":
        from prognos.models.trees import RandomForestMember

        return RandomForestMember(**{"random_state": seed, **params})  # type: ignore[arg-type]
    from prognos.models.sequence import SequenceModel

    return SequenceModel(**{"seed": seed, **params})  # type: ignore[arg-type]


@dataclass(frozen=True)
class FoldTask:
    """One member to fit on a fold's training rows and score on its validation rows."""

    fold: int
    member: str
    params: dict[str, Any]
    seed: int
    x_train: ModelInput
    y_train: Targets
    x_val: ModelInput


@dataclass(frozen=True)
class FoldFit:
    """A fitted pair's validation predictions and its fit time (seconds, in its process)."""

    fold: int
    member: str
    rul: NDArray[np.float64]
    proba: NDArray[np.float64]
    seconds: float


def fit_task(task: FoldTask) -> FoldFit:
    start = time.perf_counter()
    member = make_member(task.member, task.params, task.seed)
    member.fit(task.x_train, task.y_train)
    seconds = time.perf_counter() - start
    rul, proba = member.predict_rul_and_proba(task.x_val)
    return FoldFit(task.fold, task.member, rul, proba, seconds)


def cv_jobs(requested: int | None, training_rows: int, members: Iterable[str]) -> int:
    """Worker processes for cross-validation's fits: ``requested`` when given, else 2 when the
    machine has two or more cores, the set has at least ``PARALLEL_MIN_ROWS`` rows and no
    network would train on CUDA; 1 (this process) otherwise."""
    if requested is not None:
        return max(1, requested)
    if (os.cpu_count() or 1) < 2 or training_rows < PARALLEL_MIN_ROWS:
        return 1
    if "sequence" in members:
        import torch

        if torch.cuda.is_available():
            return 1
    return 2


def _one_thread_params(member: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the member's thread setting at 1 (for a worker sharing the cores)."""
    knob = _THREAD_PARAMS.get(member)
    return params if knob is None else {**params, knob: 1}


def _one_thread(task: FoldTask) -> FoldTask:
    return replace(task, params=_one_thread_params(task.member, task.params))


@dataclass(frozen=True)
class FinalTask:
    """One member of the final model, fitted on every training row."""

    member: str
    params: dict[str, Any]
    seed: int
    x: ModelInput
    y: Targets


class FitPool:
    """The worker processes of one training, shared by the cross-validation's fits and the final
    model's, which do not depend on each other: the caller queues the final members
    (:meth:`start_final`) behind the first fold's fits, and the other folds' shorter fits fill
    the workers at the end, instead of one worker idling beside the last network fit of the CV
    and again beside the final network fit. FD002, session 24 (same VM, quiet): `prognos train`
    5 min 38 s -> 5 min 02 s; FD001 2 min 38 s both ways (its two final fits took about as long
    as each other, and the cores were already busy).

    ``jobs`` 1 fits everything in this process, in order, when asked (nothing ahead of time).
    Final fits started for members the decision then does not use (:meth:`final` is told which)
    are dropped: cancelled, or their worker stopped when the pool closes.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None
        self._final: dict[str, Future[tuple[str, Member]]] = {}
        self._folds: set[Future[FoldFit]] = set()
        self._dropped: list[Future[tuple[str, Member]]] = []

    def __enter__(self) -> FitPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fit_folds(self, tasks: Iterable[FoldTask]) -> Iterator[FoldFit]:
        """Fit every task, in this process (``jobs`` 1, in order) or in the workers, one thread
        each (results as they finish). ``tasks`` is consumed lazily, one ahead of the workers,
        so the caller builds the next fold's inputs while the workers fit."""
        if self.jobs == 1:
            yield from map(fit_task, tasks)
            return
        pool = self._executor()
        source = (_one_thread(task) for task in tasks)
        pending = self._folds

        def submit() -> None:
            task = next(source, None)
            if task is not None:
                pending.add(pool.submit(fit_task, task))

        with _translated():
            for _ in range(self.jobs + 1):
                submit()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.discard(future)
                    submit()
                    yield future.result()

    def start_final(self, tasks: Sequence[FinalTask]) -> None:
        """Queue the final model's fits behind the work already queued (no-op with one job)."""
        if self.jobs == 1:
            return
        pool = self._executor()
        for task in tasks:
            if task.member not in self._final:
                self._final[task.member] = pool.submit(_fit_final_in_worker, task)

    def final(self, tasks: Sequence[FinalTask]) -> dict[str, Member]:
        """The fitted members of ``tasks``: those started ahead awaited, the others fitted now
        (in the workers, or in this process with one job); started fits of other members are
        dropped."""
        wanted = {task.member for task in tasks}
        for member in set(self._final) - wanted:
            dropped = self._final.pop(member)
            if not dropped.cancel():  # running: stopped with the pool
                self._dropped.append(dropped)
        if self.jobs == 1:
            return {t.member: make_member(t.member, t.params, t.seed).fit(t.x, t.y) for t in tasks}
        self.start_final(tasks)
        with _translated():
            return dict(self._final.pop(task.member).result() for task in tasks)

    def close(self) -> None:
        """Stop the workers, those still fitting what nobody awaits included."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        running: list[Future[Any]] = [*self._final.values(), *self._dropped, *self._folds]
        if any(not future.done() for future in running):
            # Dropped fits (final ones not used, folds of a failed cross-validation) may run for
            # a minute more, and a pool's shutdown waits for them. Python 3.14 has
            # terminate_workers(); before it, the processes are reached through _processes.
            terminate = getattr(pool, "terminate_workers", None)
            if terminate is not None:
                terminate()
            else:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
        self._final.clear()
        self._folds.clear()
        self._dropped.clear()
        pool.shutdown(wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        """Started by "spawn" (a forked child would inherit the OpenMP thread pools of torch and
        XGBoost in an undefined state). Not joblib's loky: it restarts a worker whose memory grew
        by 300 MB since its first task as a leak, which a network fit after a tree fit always
        is, and each restart imports torch again."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.jobs, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool


def _fit_final_in_worker(task: FinalTask) -> tuple[str, Member]:
    params = _one_thread_params(task.member, task.params)
    member = make_member(task.member, params, task.seed).fit(task.x, task.y)
    knob = _THREAD_PARAMS.get(task.member)
    if knob is not None:  # served with the configured threads, not the worker's one
        configured = make_member(task.member, task.params, task.seed).get_params()[knob]  # type: ignore[attr-defined]
        member.set_params(**{knob: configured})  # type: ignore[attr-defined]
    return task.member, member


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """A dead worker is the training's error, with its likely causes."""
    try:
        yield
    except BrokenProcessPool as exc:
        raise TrainingError(
            "a worker process of the training died: out of memory, or a script that trains "
            'without the `if __name__ == "__main__":` guard (worker processes start the main '
            "module anew); PROGNOS_TRAIN_JOBS=1 fits every member in this process"
        ) from exc
