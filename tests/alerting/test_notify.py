"""Delivery to a local receiver on 127.0.0.1: Slack and JSON payloads, a retry after a 500, a
receiver that is down never blocks evaluation, and a webhook URL never reaches the logs."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from pydantic import SecretStr

from prognos.alerting.evaluate import evaluate
from prognos.alerting.notify import (
    AlertEvent,
    Dispatcher,
    JsonWebhook,
    LogNotifier,
    SlackWebhook,
    build_notifiers,
)
from prognos.alerting.rules import load_rules
from prognos.config import Settings
from prognos.errors import ConfigError
from prognos.storage.database import Database
from tests.alerting.conftest import NOW, Receiver, Seed

SECRET = "T000/B000/secret-token"


def event(**changes: object) -> AlertEvent:
    fields: dict[str, object] = {
        "alert_id": "alr_1",
        "rule": "no_successful_request",
        "signal": "seconds_since_last_request",
        "severity": "critical",
        "state": "firing",
        "fleet": "rig",
        "subject": "",
        "value": 360.0,
        "comparison": ">",
        "threshold": 300.0,
        "started_at": NOW,
        "fired_at": NOW,
        "resolved_at": None,
        "at": NOW,
        "repeat": False,
        "message": "[CRITICAL] no_successful_request on fleet rig: 360 > 300",
        "description": "No prediction has been served successfully for 5 minutes.",
    }
    fields.update(changes)
    return AlertEvent(**fields)  # type: ignore[arg-type]


def fast(*notifiers: object, attempts: int = 4) -> Dispatcher:
    return Dispatcher(notifiers, attempts=attempts, backoff_seconds=0.01)  # type: ignore[arg-type]


def test_slack_and_json_payloads(receiver: Receiver) -> None:
    slack = SlackWebhook(SecretStr(receiver.url(f"/slack/{SECRET}")))
    hook = JsonWebhook(SecretStr(receiver.url("/json")))
    dispatcher = fast(slack, hook)
    dispatcher.submit(event())
    dispatcher.submit(event(state="resolved", resolved_at=NOW + timedelta(minutes=3)))
    assert dispatcher.flush(10)
    dispatcher.stop()
    by_path: dict[str, list[dict]] = {}
    for path, body in receiver.received:
        by_path.setdefault(path.split("/")[1], []).append(body)
    first = by_path["slack"][0]
    assert first["text"].startswith("[CRITICAL] no_successful_request")
    assert first["blocks"][0]["text"]["text"] == first["text"]
    assert "fleet rig" in first["blocks"][1]["elements"][0]["text"]
    [fired, resolved] = by_path["json"]
    assert fired == {
        "alert_id": "alr_1",
        "rule": "no_successful_request",
        "signal": "seconds_since_last_request",
        "severity": "critical",
        "state": "firing",
        "fleet": "rig",
        "subject": "",
        "value": 360.0,
        "comparison": ">",
        "threshold": 300.0,
        "started_at": NOW.isoformat(),
        "fired_at": NOW.isoformat(),
        "resolved_at": None,
        "at": NOW.isoformat(),
        "repeat": False,
        "message": event().message,
        "description": event().description,
    }
    assert resolved["state"] == "resolved"
    assert resolved["resolved_at"] == (NOW + timedelta(minutes=3)).isoformat()
    assert dispatcher.stats()["JSON webhook"] == {
        "delivered": 2,
        "failed": 0,
        "dropped": 0,
        "queued": 0,
    }


def test_a_500_is_retried_until_it_passes_a_400_is_not(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    hook = JsonWebhook(SecretStr(receiver.url("/json")))
    dispatcher = fast(hook)
    dispatcher.submit(event())
    assert dispatcher.flush(10)
    assert receiver.answered == [500, 503, 200]
    assert dispatcher.stats()["JSON webhook"]["delivered"] == 1

    receiver.statuses = [400]
    dispatcher.submit(event())
    assert dispatcher.flush(10)
    dispatcher.stop()
    assert receiver.answered[3:] == [400]  # refused for good: not sent again
    assert dispatcher.stats()["JSON webhook"]["failed"] == 1


def test_a_receiver_that_is_down_blocks_nothing_and_leaks_no_url(
    settings: Settings,
    db: Database,
    seed: Seed,
    closed_url: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    slack_url = receiver.url(f"/services/{SECRET}")
    settings = settings.model_copy(
        update={
            "alert_slack_webhook_url": SecretStr(slack_url),
            "alert_webhook_url": SecretStr(closed_url),
        }
    )
    dispatcher = Dispatcher(build_notifiers(settings), attempts=3, backoff_seconds=0.2)
    seed.prediction(NOW - timedelta(minutes=10))  # fires no_successful_request at once
    started = time.perf_counter()
    evaluation = evaluate(settings, db, load_rules(), now=NOW, dispatcher=dispatcher)
    took = time.perf_counter() - started
    assert [e.rule for e in evaluation.events] == ["no_successful_request"]
    # The dead receiver's retries (0.2 + 0.4 s) run on its own thread, not in evaluate().
    assert took < 0.5, took
    assert receiver.arrived.wait(5)  # the Slack receiver got it meanwhile
    assert dispatcher.flush(10)
    dispatcher.stop()
    stats = dispatcher.stats()
    assert stats["slack webhook"]["delivered"] == 1
    assert stats["JSON webhook"] == {"delivered": 0, "failed": 1, "dropped": 0, "queued": 0}
    assert stats["log"]["delivered"] == 1
    failures = [r for r in caplog.records if "not delivered to the JSON webhook" in r.getMessage()]
    assert len(failures) == 1 and "after 3 attempt(s)" in failures[0].getMessage()
    assert any("alert: [CRITICAL] no_successful_request" in r.getMessage() for r in caplog.records)
    text = caplog.text + "".join(str(r.args) + r.getMessage() for r in caplog.records)
    for secret in (SECRET, "secret-token", slack_url, closed_url):
        assert secret not in text
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_a_slow_receiver_does_not_hold_up_the_others(receiver: Receiver) -> None:
    class Stuck(LogNotifier):
        name = "stuck"

        def deliver(self, event: AlertEvent) -> None:
            time.sleep(0.6)

    hook = JsonWebhook(SecretStr(receiver.url("/json")))
    dispatcher = fast(Stuck(), hook)
    started = time.perf_counter()
    dispatcher.submit(event())
    assert receiver.arrived.wait(5)
    assert time.perf_counter() - started < 0.5
    dispatcher.stop()


def test_a_full_queue_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    class Never(LogNotifier):
        name = "never"

        def deliver(self, event: AlertEvent) -> None:
            time.sleep(0.3)

    dispatcher = Dispatcher([Never()], queue_size=1)
    for _ in range(4):
        dispatcher.submit(event())
    assert dispatcher.stats()["never"]["dropped"] >= 2
    assert "queue is full" in caplog.text
    dispatcher.stop(timeout=2)


def test_a_webhook_url_must_be_http_and_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        SlackWebhook(SecretStr(f"ftp://example.invalid/{SECRET}"))
    assert SECRET not in str(info.value)
