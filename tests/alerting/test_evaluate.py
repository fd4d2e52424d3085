"""Alert states over evaluations: pending, firing after ``for``, repeats, one resolve, no data;
deterministic given ``now``."""

from __future__ import annotations

from datetime import datetime, timedelta

from prognos.alerting.evaluate import evaluate
from prognos.alerting.loop import AlertLoop
from prognos.alerting.notify import AlertEvent, Dispatcher
from prognos.alerting.rules import RuleSet
from prognos.config import Settings
from prognos.storage import alerts as store
from prognos.storage.database import Database
from tests.alerting.conftest import FLEET, MODEL, NOW, Seed

F2 = "model_f2_score_current"
RULES = RuleSet.model_validate(
    {
        "rules": [
            {
                "name": "f2_low",
                "signal": "realised_f2",
                "comparison": "<",
                "threshold": 0.75,
                "for": "1h",
                "severity": "critical",
                "description": "F2 is low.",
            }
        ]
    }
)


class Collect:
    """A dispatcher stand-in that keeps what it was handed."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def submit(self, event: AlertEvent) -> None:
        self.events.append(event)


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def run(settings: Settings, db: Database, minutes: float, sink: Collect) -> list:
    evaluation = evaluate(
        settings,
        db,
        RULES,
        now=NOW + timedelta(minutes=minutes),
        dispatcher=sink,  # type: ignore[arg-type]
    )
    return evaluation.results


def test_pending_then_firing_then_repeats_then_one_resolve(
    settings: Settings, db: Database, seed: Seed
) -> None:
    sink = Collect()
    seed.run(NOW, {F2: 0.70})
    [result] = run(settings, db, 0, sink)
    assert (result.state, result.change, result.value) == ("pending", "new", 0.70)
    assert (result.fleet, result.subject, result.started_at) == (FLEET, MODEL, NOW)
    assert sink.events == []

    assert run(settings, db, 59, sink)[0].state == "pending"
    assert sink.events == []

    [result] = run(settings, db, 60, sink)
    assert (result.state, result.change, result.fired_at) == ("firing", "fired", at(60))
    [event] = sink.events
    assert (event.state, event.repeat, event.rule, event.severity) == (
        "firing",
        False,
        "f2_low",
        "critical",
    )
    assert "[CRITICAL] f2_low" in event.message and "model_f2_score_current 0.7 < 0.75" in (
        event.message
    )

    # Held: no message until the repeat interval (60 minutes here) has passed since the last.
    assert run(settings, db, 100, sink)[0].change == ""
    assert len(sink.events) == 1
    [result] = run(settings, db, 120, sink)
    assert (result.state, result.change) == ("firing", "repeated")
    assert [e.repeat for e in sink.events] == [False, True]
    assert run(settings, db, 150, sink)[0].change == ""

    # It clears: one resolve message, then nothing.
    seed.run(at(155), {F2: 0.80})
    [result] = run(settings, db, 160, sink)
    assert (result.state, result.change) == ("resolved", "resolved")
    assert sink.events[-1].state == "resolved"
    assert sink.events[-1].resolved_at == at(160)
    assert sink.events[-1].message.startswith("[RESOLVED] f2_low")
    assert run(settings, db, 170, sink)[0].state == "ok"
    assert run(settings, db, 400, sink)[0].state == "ok"
    assert len(sink.events) == 3

    [stored] = store.list_alerts(db, include_resolved=True)
    assert stored["state"] == "resolved"
    assert (stored["started_at"], stored["fired_at"], stored["resolved_at"]) == (
        NOW,
        at(60),
        at(160),
    )
    assert stored["last_notified_at"] == at(120)
    assert store.list_alerts(db) == []

    # It comes back: a new alert, pending again from the start.
    seed.run(at(405), {F2: 0.6})
    [result] = run(settings, db, 410, sink)
    assert (result.state, result.change, result.started_at) == ("pending", "new", at(410))
    assert len(store.list_alerts(db, include_resolved=True)) == 2


def test_a_pending_alert_that_clears_resolves_silently(
    settings: Settings, db: Database, seed: Seed
) -> None:
    sink = Collect()
    seed.run(NOW, {F2: 0.70})
    run(settings, db, 0, sink)
    seed.run(at(10), {F2: 0.9})
    [result] = run(settings, db, 20, sink)
    assert (result.state, result.change) == ("resolved", "cleared")
    assert sink.events == []


def test_no_data_neither_fires_nor_resolves(settings: Settings, db: Database, seed: Seed) -> None:
    sink = Collect()
    # No monitoring run at all: no data, nothing stored.
    [result] = run(settings, db, 0, sink)
    assert (result.state, result.rule) == ("no data", "f2_low")
    assert store.list_alerts(db, include_resolved=True) == []

    seed.run(NOW, {F2: 0.70})
    assert run(settings, db, 1, sink)[0].state == "pending"
    # The newest run has no F2 (no labelled predictions): the alert stays pending however long.
    seed.run(at(5), {F2: None, "data_drift_share": 0.1})
    for minutes in (30, 90, 200):
        [result] = run(settings, db, minutes, sink)
        assert result.state == "no data"
        assert "stays pending" in result.note
    assert sink.events == []
    assert store.list_alerts(db)[0]["state"] == "pending"
    # Data again, still low: it has been held since minute 1, so it fires now.
    seed.run(at(205), {F2: 0.70})
    [result] = run(settings, db, 210, sink)
    assert (result.state, result.started_at) == ("firing", at(1))
    # A firing alert without data does not resolve either.
    seed.run(at(215), {F2: None})
    assert run(settings, db, 220, sink)[0].state == "no data"
    assert store.list_alerts(db)[0]["state"] == "firing"
    assert [e.state for e in sink.events] == ["firing"]


def test_a_second_evaluator_at_the_same_time_sends_nothing_twice(
    settings: Settings, db: Database, seed: Seed
) -> None:
    sink = Collect()
    seed.run(NOW, {F2: 0.5})
    run(settings, db, 0, sink)
    run(settings, db, 60, sink)
    run(settings, db, 60, sink)  # another worker, the same tick
    assert len(sink.events) == 1
    assert len(store.list_alerts(db)) == 1


def test_the_loop_evaluates_on_its_thread_and_stops(
    settings: Settings, db: Database, seed: Seed
) -> None:
    seed.run(NOW, {F2: 0.5})
    settings = settings.model_copy(update={"alert_evaluate_seconds": 0.05})
    dispatcher = Dispatcher([])
    loop = AlertLoop(settings, db, rules=RULES, dispatcher=dispatcher, clock=lambda: NOW)
    loop.start()
    try:
        for _ in range(100):
            if loop.evaluations >= 2:
                break
            loop._stop.wait(0.05)
    finally:
        loop.stop()
    assert loop.evaluations >= 2
    assert loop.last is not None and loop.last.results[0].state == "pending"
    assert loop._thread is None

    # The database gone: the evaluation fails, is reported, and the loop would go on.
    db.dispose()
    broken = AlertLoop(
        settings, Database(f"sqlite:///{settings.home}/none/x.db"), rules=RULES, clock=lambda: NOW
    )
    assert broken.run_once() is None
    assert broken.last_error is not None and "schema" in broken.last_error
