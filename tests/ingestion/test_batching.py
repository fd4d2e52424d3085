"""The batcher: a ``log`` job's predictions are queued for the database on the compute thread,
right after the readings they came from, with their latency; other jobs' are left to the caller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from prognos.ingestion.batching import Batcher
from prognos.ingestion.predictor import Prediction
from prognos.ingestion.scoring import BatchResult, Outcome, Work


class Scorer:
    """Accepts every reading and predicts for it (no model: the batcher is what is tested)."""

    def process(self, work: Sequence[Work]) -> BatchResult:
        outcomes, accepted = [], []
        for j, (_, items, _) in enumerate(work):
            row = []
            for i, item in enumerate(items):
                accepted.append((j, i, item["asset_id"], item["time"]))
                row.append(Outcome(prediction=prediction(item["asset_id"], item["time"])))
            outcomes.append(row)
        return BatchResult(outcomes, accepted)


def prediction(asset: str, time: int) -> Prediction:
    return Prediction(asset, time, 0.1, "LOW", 50.0, 40.0, 60.0, False, "m", "1", None)


def run(log: bool, on_scored: Any) -> tuple[list[Outcome], list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []  # (what, asset, thread)

    def accepted(reading: Any, asset: str, when: int) -> None:
        events.append(("reading", asset, threading.current_thread().name))

    def scored(p: Prediction, latency_ms: float) -> None:
        events.append(("prediction", p.asset_id, threading.current_thread().name))
        on_scored(p, latency_ms)

    async def main() -> list[Outcome]:
        batcher = Batcher(lambda: Scorer(), on_accepted=accepted, on_scored=scored)  # type: ignore[arg-type,return-value]
        await batcher.start()
        try:
            items = [{"asset_id": "a", "time": 1}, {"asset_id": "b", "time": 1}]
            return await batcher.submit("predict", items, log=log)
        finally:
            await batcher.stop()

    return asyncio.run(main()), events


def test_a_logged_jobs_predictions_follow_its_readings_on_the_compute_thread() -> None:
    latencies: list[float] = []
    outcomes, events = run(True, lambda p, ms: latencies.append(ms))
    assert [e[:2] for e in events] == [
        ("reading", "a"), ("reading", "b"), ("prediction", "a"), ("prediction", "b")
    ]  # fmt: skip
    assert {e[2] for e in events} == {"prognos-compute_0"}
    assert [o.latency_ms for o in outcomes] == latencies and latencies[0] > 0


def test_other_jobs_leave_logging_to_the_caller() -> None:
    outcomes, events = run(False, lambda p, ms: None)
    assert [e[0] for e in events] == ["reading", "reading"]
    assert all(o.prediction is not None and o.latency_ms is None for o in outcomes)


def test_a_prediction_that_cannot_be_logged_is_not_answered() -> None:
    def refuse(p: Prediction, ms: float) -> None:
        raise RuntimeError("writer refused")

    outcomes, _ = run(True, refuse)
    assert all(o.prediction is None and isinstance(o.error, RuntimeError) for o in outcomes)
