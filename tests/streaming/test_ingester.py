"""The ingester over the in-process queue, with the tiny model: dead letters with their reason and
raw payload, the same verdicts as HTTP, redeliveries stored once, and nothing acknowledged while
the database is away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prognos.config import Settings
from prognos.data.faults import parse_fault
from prognos.errors import StorageUnavailableError
from prognos.ingestion.scoring import Outcome
from prognos.serving.app import create_app
from prognos.streaming.ingester import StreamIngester
from prognos.streaming.memory import MemoryBroker, MemorySender, MemorySubscription
from prognos.streaming.messages import subscription, topic_for
from prognos.streaming.publisher import TransportFaults, outgoing, simulated_fleet
from prognos.streaming.run import StreamPlan, run_stream
from tests.helpers.serving import body_for, open_settings, readings
from tests.helpers.streaming import dead_letters, predicted_assets, stored
from tests.helpers.trained import Trained

FLEET = "mem"
Phase = Callable[[MemorySender], int]


def _settings(trained: Trained, db: Path) -> Settings:
    return trained.settings(
        model_name=trained.name, database_url=f"sqlite:///{db}", compute_process=False,
        fleet=FLEET, stream_batch_wait_ms=5.0,
    )  # fmt: skip


def ingest(
    settings: Settings, phases: list[Phase], *, before: Phase | None = None,
    patch: Callable[[StreamIngester], None] | None = None,
) -> StreamIngester:  # fmt: skip
    """Run an ingester over a memory broker: ``before`` publishes ahead of it (held, so taken
    as one batch), then each phase publishes and waits until all it sent is acknowledged."""

    async def main() -> StreamIngester:
        broker = MemoryBroker()
        total = before(broker.sender()) if before else 0
        ingester = StreamIngester(settings, broker.subscription(subscription(FLEET)))
        if patch is not None:
            patch(ingester)
        stop = asyncio.Event()
        task = asyncio.create_task(ingester.run(stop))
        await ingester.ready.wait()
        for phase in [lambda _: 0, *phases]:
            total += phase(broker.sender())
            for _ in range(600):
                if ingester.metrics.value("prognos_stream_messages_acked_total") >= total:
                    break
                assert not task.done(), task
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the ingester did not acknowledge everything")
        stop.set()
        await task
        return ingester

    return asyncio.run(main())


def send(items: list[tuple[str, Any]]) -> Phase:
    """Publish (asset, body) pairs; a body that is bytes goes as it is."""

    def phase(sender: MemorySender) -> int:
        for asset, body in items:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            sender.publish(topic_for(FLEET, asset), raw, 0.0)
        return len(items)

    return phase


@pytest.fixture(scope="module")
def rows(trained: Trained) -> list[dict[str, Any]]:
    return readings(trained, 0, 8)


def _bodies(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Five good readings of one asset, and one bad payload per reason (sent after them)."""
    good = [body_for(r, equipment_id="a1") for r in rows[:5]]
    last = good[-1]
    when = "2026-01-01T00:00:00Z"
    sensors = last["sensor_readings"]
    bad: dict[str, Any] = {
        "not_json": b'{"equipment_id": "a1", "cycle": ',
        "schema": {**last, "cycle": -3},
        "unknown_channel": {**last, "cycle": 6, "sensor_readings": {**last["sensor_readings"],
                                                                   "sensor_99": 1.0}},
        "out_of_range": {**last, "cycle": 6, "sensor_readings": {**last["sensor_readings"],
                                                                "sensor_1": 1e9}},
        "out_of_order": {**good[0], "cycle": 0},
        "conflict": {**last, "sensor_readings": {**sensors, "sensor_2": sensors["sensor_2"] + 0.5}},
        "time_kind": {k: v for k, v in last.items() if k != "cycle"} | {"timestamp": when},
    }  # fmt: skip
    return good, {k: v if isinstance(v, bytes) else json.dumps(v).encode() for k, v in bad.items()}


def test_bad_messages_are_dead_letters_and_the_ingester_keeps_going(
    trained: Trained, tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    good, bad = _bodies(rows)
    mismatch = json.dumps(good[0] | {"equipment_id": "a2"}).encode()
    after = body_for(rows[5], equipment_id="a1")
    db = tmp_path / "db.sqlite"
    ingester = ingest(_settings(trained, db), [
        send([("a1", b) for b in good]),
        send([("a1", raw) for raw in bad.values()] + [("a1", mismatch), ("a1", after)]),
    ])  # fmt: skip
    url = f"sqlite:///{db}"
    letters = {d["reason"]: d for d in dead_letters(url, FLEET)}
    assert sorted(d["reason"] for d in dead_letters(url, FLEET)) == sorted([*bad, "topic_mismatch"])
    for reason, raw in bad.items():
        assert letters[reason]["payload"] == raw.decode(), reason
        assert letters[reason]["topic"] == topic_for(FLEET, "a1")
        assert letters[reason]["source"] == "memory" and letters[reason]["asset_id"] == "a1"
    assert letters["topic_mismatch"]["payload"] == mismatch.decode()
    # It kept going: the reading after the bad ones is stored and scored.
    assert sorted(stored(url, FLEET)) == [("a1", c) for c in range(1, 7)]
    assert predicted_assets(url, FLEET) == {"a1"}
    m = ingester.metrics
    assert m.value("prognos_stream_dead_letters_total", reason="schema") == 1
    assert m.value("prognos_stream_readings_stored_total") == 6


def test_http_and_the_stream_give_the_same_verdict(
    trained: Trained, tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    good, bad = _bodies(rows)
    db = tmp_path / "db.sqlite"
    ingest(_settings(trained, db), [send([("a1", b) for b in good]),
                                    send([("a1", raw) for raw in bad.values()])])  # fmt: skip
    stream = {d["payload"]: d for d in dead_letters(f"sqlite:///{db}", FLEET)}
    app = create_app(open_settings(trained, tmp_path / "http.sqlite"))
    with TestClient(app) as client:
        for body in good:
            assert client.post("/readings", json=body).status_code == 200
        for reason, raw in bad.items():
            response = client.post("/readings", content=raw,
                                   headers={"Content-Type": "application/json"})  # fmt: skip
            assert response.status_code in (409, 422), response.text
            answer = response.json()
            letter = stream[raw.decode()]
            if answer.get("error") == "RequestValidationError":
                [error] = answer["errors"]
                http = "not_json" if error["type"] == "json_invalid" else "schema"
                assert error["field"] in letter["detail"]
            else:
                [result] = answer["results"]
                http = result["reason"]
                assert result["message"] == letter["detail"]
            assert http == letter["reason"] == reason


def test_redelivered_messages_are_acknowledged_and_stored_once(
    trained: Trained, tmp_path: Path
) -> None:
    data = simulated_fleet(3, 12, seed=4)
    messages = list(outgoing(data, FLEET))
    items = [(m.asset_id, m.payload) for m in messages]
    db = tmp_path / "db.sqlite"
    ingester = ingest(_settings(trained, db), [send(items), send(items), send(items[-5:])])
    url = f"sqlite:///{db}"
    assert sorted(stored(url, FLEET)) == sorted((m.asset_id, m.time) for m in messages)
    assert dead_letters(url, FLEET) == []
    m = ingester.metrics
    assert m.value("prognos_stream_duplicates_total") == len(items) + 5
    assert m.value("prognos_stream_messages_acked_total") == 2 * len(items) + 5
    assert predicted_assets(url, FLEET) == {"1", "2", "3"}


def test_transport_faults_lose_only_the_dropped_readings(trained: Trained, tmp_path: Path) -> None:
    data = simulated_fleet(4, 15, seed=5)
    faults = [parse_fault(f) for f in ("drop:1-4:1:0.1", "duplicate:1-4:1:0.2",
                                        "reorder:1-4:2:0.2")]  # fmt: skip
    sent = list(TransportFaults(faults, seed=3).apply(outgoing(data, FLEET)))
    db = tmp_path / "db.sqlite"
    # Published before the ingester takes any, so one batch: reorders are healed in it.
    ingester = ingest(_settings(trained, db), [], before=send([(m.asset_id, m.payload)
                                                              for m in sent]))  # fmt: skip
    url = f"sqlite:///{db}"
    assert sorted(stored(url, FLEET)) == sorted({(m.asset_id, m.time) for m in sent})
    assert len(stored(url, FLEET)) < 60 and dead_letters(url, FLEET) == []
    assert ingester.metrics.value("prognos_stream_duplicates_total") == len(sent) - len(
        {(m.asset_id, m.time) for m in sent}
    )


def test_nothing_is_acknowledged_while_the_database_is_away(
    trained: Trained, tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    acked_during_outage: list[int] = []

    def patch(ingester: StreamIngester) -> None:
        sub = ingester.subscription
        assert isinstance(sub, MemorySubscription)
        calls = {"n": 0}

        async def failing_ingest(readings: Any) -> list[Outcome]:
            calls["n"] += 1
            if calls["n"] <= 2:
                acked_during_outage.append(sub.acked)
                raise StorageUnavailableError("database down (test)")
            return await original(readings)

        original = ingester.core.ingest
        ingester.core.ingest = failing_ingest  # type: ignore[method-assign]

    db = tmp_path / "db.sqlite"
    items = [("a1", body_for(r, equipment_id="a1")) for r in rows[:4]]
    ingester = ingest(_settings(trained, db), [send(items)], patch=patch)
    assert acked_during_outage == [0, 0]
    assert ingester.metrics.value("prognos_stream_batch_retries_total") == 2
    assert sorted(stored(f"sqlite:///{db}", FLEET)) == [("a1", c) for c in range(1, 5)]


def test_the_demo_stream_says_it_runs_over_the_in_process_queue(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROGNOS_MQTT_URL", raising=False)
    said: list[str] = []
    summary = run_stream(
        _settings(trained, tmp_path / "db.sqlite"),
        StreamPlan(assets=3, readings=10, faults=(parse_fault("duplicate:1-3:1:0.2"),)),
        say=said.append,
    )
    assert said[0].startswith("transport: in-process queue")
    assert summary.complete and summary.stored == summary.readings == 30
    assert summary.duplicates == summary.published - 30 > 0 and summary.predictions > 0
    assert summary.latency_p95 is not None and summary.latency_p95 < 30
