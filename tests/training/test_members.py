"""Cross-validation's (fold, member) fits: in worker processes they give what they give here."""

from __future__ import annotations

import numpy as np
import pytest

from prognos.data.labels import run_to_failure_labels
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import TrainingError
from prognos.features import FeaturePipeline
from prognos.fleet import ASSET
from prognos.models.base import Targets
from prognos.models.bundle import model_input
from prognos.training import members
from prognos.training.members import FinalTask, FitPool, FoldTask, cv_jobs


def fit_folds(tasks: list[FoldTask], jobs: int) -> list[members.FoldFit]:
    with FitPool(jobs) as pool:
        return list(pool.fit_folds(tasks))


def fit_final(tasks: list[FinalTask], jobs: int) -> dict[str, members.Member]:
    with FitPool(jobs) as pool:
        pool.start_final(tasks)
        return pool.final(tasks)


def _tasks(thread_params: bool) -> list[FoldTask]:
    fleet = simulate_fleet(SimulatorConfig(n_assets=6, seed=3))
    readings = fleet.readings
    labels = run_to_failure_labels(readings)
    targets = Targets(
        rul=labels["rul_capped"].to_numpy(dtype=np.float64),
        failed=labels["failure_within_h"].to_numpy(dtype=np.int64),
    )
    assets = readings[ASSET].to_numpy()
    tasks = []
    for fold, held in enumerate(np.unique(assets)[:1]):
        train_idx = np.flatnonzero(assets != held)
        val_idx = np.flatnonzero(assets == held)
        pipeline = FeaturePipeline(fleet.spec).fit(readings.iloc[train_idx])
        x_train = model_input(pipeline, readings.iloc[train_idx], 20)
        x_val = model_input(pipeline, readings.iloc[val_idx], 20)
        xgb = {"n_estimators": 20, **({"n_jobs": 1} if thread_params else {})}
        net = {"max_epochs": 2, "hidden": 8, **({"threads": 1} if thread_params else {})}
        for name, params in (("xgboost", xgb), ("sequence", net)):
            tasks.append(FoldTask(fold, name, params, 0, x_train, targets.take(train_idx), x_val))
    return tasks


def test_fits_in_worker_processes_equal_fits_in_this_process() -> None:
    """Same members, same threads (one), two processes at once: the same predictions, bit for
    bit, and every (fold, member) pair comes back once."""
    tasks = _tasks(thread_params=True)
    here = {(f.fold, f.member): f for f in fit_folds(tasks, jobs=1)}
    there = {(f.fold, f.member): f for f in fit_folds(tasks, jobs=2)}
    assert sorted(there) == sorted(here) == sorted((t.fold, t.member) for t in tasks)
    for key, fit in here.items():
        np.testing.assert_array_equal(there[key].rul, fit.rul)
        np.testing.assert_array_equal(there[key].proba, fit.proba)
        assert there[key].seconds > 0


def test_workers_fit_on_one_thread_each() -> None:
    """Two workers of two threads each would oversubscribe the cores they are meant to share:
    a worker's member gets one thread whatever the config says."""
    xgb, net = _tasks(thread_params=False)[:2]
    assert members._one_thread(xgb).params == {**xgb.params, "n_jobs": 1}
    assert members._one_thread(net).params == {**net.params, "threads": 1}


def test_cv_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for: as asked. Otherwise two workers only where they pay: two or more cores, a
    training set of PARALLEL_MIN_ROWS rows or more, and no network bound for CUDA."""
    import torch

    big = members.PARALLEL_MIN_ROWS
    monkeypatch.setattr(members.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cv_jobs(3, 10, ["xgboost"]) == 3
    assert cv_jobs(0, big, ["xgboost"]) == 1
    assert cv_jobs(None, big, ["xgboost", "sequence"]) == 2
    assert cv_jobs(None, big - 1, ["xgboost", "sequence"]) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cv_jobs(None, big, ["xgboost", "sequence"]) == 1
    assert cv_jobs(None, big, ["xgboost"]) == 2
    monkeypatch.setattr(members.os, "cpu_count", lambda: 1)
    assert cv_jobs(None, big, ["xgboost"]) == 1


class _KillsItsProcess:
    """Unpickled in a worker, ends that worker on the spot (as the OOM killer would)."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        import os

        return (os._exit, (1,))


def test_a_worker_that_dies_is_a_training_error() -> None:
    task = _tasks(thread_params=True)[0]
    dying = FoldTask(0, "xgboost", {}, 0, _KillsItsProcess(), task.y_train, task.x_val)  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="a worker process of the training died"):
        fit_folds([dying, task], jobs=2)


def test_final_members_fitted_in_workers_are_those_fitted_here() -> None:
    """Fitted side by side in workers (one thread each), the final members predict what the
    same fit in this process predicts, and keep the configured threads for serving."""
    tasks = _tasks(thread_params=False)
    finals = [FinalTask(t.member, t.params, 0, t.x_train, t.y_train) for t in tasks]
    there = fit_final(finals, jobs=2)
    one_thread = {"xgboost": {"n_jobs": 1}, "sequence": {"threads": 1}}
    here = fit_final(
        [FinalTask(f.member, {**f.params, **one_thread[f.member]}, 0, f.x, f.y) for f in finals],
        jobs=1,
    )
    assert sorted(there) == sorted(here) == ["sequence", "xgboost"]
    x_val = tasks[0].x_val
    for name, member in here.items():
        for a, b in zip(
            there[name].predict_rul_and_proba(x_val),
            member.predict_rul_and_proba(x_val),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    assert there["sequence"].get_params()["threads"] is None  # type: ignore[attr-defined]
    default_jobs = members.make_member("xgboost", {}, 0).get_params()["n_jobs"]  # type: ignore[attr-defined]
    assert there["xgboost"].get_params()["n_jobs"] == default_jobs  # type: ignore[attr-defined]


def test_a_final_fit_the_decision_drops_is_stopped_not_awaited() -> None:
    """Final fits start before the cross-validation says which members the decision uses; one
    it drops (a network of 10,000 epochs here) is stopped with the pool, not waited for."""
    import time

    task = _tasks(thread_params=True)[0]
    slow = FinalTask(
        "sequence",
        {"max_epochs": 10_000, "patience": 10_000, "hidden": 8},
        0,
        task.x_train,
        task.y_train,
    )
    quick = FinalTask("xgboost", {"n_estimators": 5}, 0, task.x_train, task.y_train)
    pool = members.FitPool(2)
    with pool:
        pool.start_final([slow, quick])
        fitted = pool.final([quick])
        assert list(fitted) == ["xgboost"]
        processes = list(pool._executor()._processes.values())  # type: ignore[union-attr]
        start = time.perf_counter()
    assert time.perf_counter() - start < 10
    assert processes and not any(p.is_alive() for p in processes)


def test_one_pool_for_the_folds_and_the_final_fits() -> None:
    """The final fits queued behind a fold's come back as if fitted alone, and the folds' fits
    are all there."""
    tasks = _tasks(thread_params=True)
    finals = [FinalTask(t.member, t.params, 0, t.x_train, t.y_train) for t in tasks]
    alone = fit_final(finals, jobs=1)
    with members.FitPool(2) as pool:
        pool.start_final(finals)
        folds = list(pool.fit_folds(tasks))
        fitted = pool.final(finals)
    assert sorted(f.member for f in folds) == ["sequence", "xgboost"]
    for name, member in alone.items():
        np.testing.assert_array_equal(
            fitted[name].predict_rul_and_proba(tasks[0].x_val)[0],
            member.predict_rul_and_proba(tasks[0].x_val)[0],
        )
