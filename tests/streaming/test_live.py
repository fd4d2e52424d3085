"""Against real Mosquitto, with ingesters as real processes: ``kill -9`` mid-stream and a restart
store every reading once; a ``$share`` group splits the work; a broker restart loses nothing;
dead letters show in /metrics; SIGTERM stops the ingester cleanly. Topics are unique per test
(the fleet name carries a uuid)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prognos.streaming.messages import topic_for
from prognos.streaming.publisher import PublishReport, outgoing, publish, simulated_fleet
from prognos.streaming.transport import MqttSender
from tests.conftest import _missing_service
from tests.helpers.streaming import (
    BROKER,
    broker_up,
    dead_letters,
    ingester_process,
    predicted_assets,
    stored,
    throwaway_mosquitto,
    wait_for,
)
from tests.helpers.trained import Trained

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _broker() -> Iterator[None]:
    if not broker_up():
        _missing_service(f"no MQTT broker at {BROKER}")
    yield


def _fleet() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


class Publisher(threading.Thread):
    """``assets`` x ``readings`` simulated readings published at ``rate`` in the background."""

    def __init__(self, url: str, fleet: str, assets: int, readings: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.data = simulated_fleet(assets, readings, seed=7)
        self.expected = sorted((m.asset_id, int(m.time)) for m in outgoing(self.data, fleet))
        self.sender = MqttSender(url)
        assert self.sender.wait_connected(10)
        self.fleet, self.rate = fleet, rate
        self.report: PublishReport | None = None

    def run(self) -> None:
        try:
            self.report = publish(self.sender, outgoing(self.data, self.fleet), rate=self.rate,
                                  drain_seconds=60)  # fmt: skip
        finally:
            self.sender.close()

    def finish(self) -> PublishReport:
        self.join(90)
        assert self.report is not None and self.report.acknowledged
        return self.report


def test_kill_9_mid_stream_and_restart_store_every_reading_once(
    trained: Trained, tmp_path: Path, postgres_url: str
) -> None:
    fleet = _fleet()
    env = {"PROGNOS_DATABASE_URL": postgres_url}
    with ingester_process(trained.home, tmp_path, fleet, env=env, name="first") as first:
        publisher = Publisher(BROKER, fleet, assets=10, readings=40, rate=150.0)
        publisher.start()
        assert wait_for(lambda: len(stored(postgres_url, fleet)) >= 50, 60)
        first.kill()  # the ingester and its compute process, mid-stream
    at_kill = len(stored(postgres_url, fleet))
    publisher.finish()  # published while no ingester ran: queued in its session
    assert at_kill < len(publisher.expected)
    with ingester_process(trained.home, tmp_path, fleet, env=env, name="second") as second:
        assert wait_for(lambda: len(stored(postgres_url, fleet)) >= len(publisher.expected), 60)
        assert second.metrics()["prognos_stream_messages_received_total"] > 0
        assert second.terminate() == 0
    rows = stored(postgres_url, fleet)
    assert sorted(rows) == publisher.expected  # each once, none lost
    assert dead_letters(postgres_url, fleet) == []  # redeliveries are duplicates, not errors
    assert predicted_assets(postgres_url, fleet) == {str(a) for a in range(1, 11)}


def test_two_ingesters_in_one_group_split_the_work(
    trained: Trained, tmp_path: Path, postgres_url: str
) -> None:
    fleet = _fleet()
    env = {"PROGNOS_DATABASE_URL": postgres_url, "PROGNOS_COMPUTE_PROCESS": "false"}
    members = [
        ingester_process(trained.home, tmp_path, fleet, env=env, name=f"member{i}",
                         args=("--group", "g", "--client-id", f"{fleet}-member{i}"))
        for i in (1, 2)
    ]  # fmt: skip
    with members[0] as one, members[1] as two:
        publisher = Publisher(BROKER, fleet, assets=10, readings=30, rate=300.0)
        publisher.start()
        publisher.finish()
        assert wait_for(lambda: len(stored(postgres_url, fleet)) >= 300, 60)
        acked = [m.metrics()["prognos_stream_messages_acked_total"] for m in (one, two)]
    assert sorted(stored(postgres_url, fleet)) == publisher.expected
    assert min(acked) > 0 and sum(acked) == 300  # both worked, each message went to one


def test_broker_restart_loses_nothing_then_sigterm_stops_cleanly(
    trained: Trained, tmp_path: Path
) -> None:
    fleet = _fleet()
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = {"PROGNOS_DATABASE_URL": db, "PROGNOS_COMPUTE_PROCESS": "false"}
    with (
        throwaway_mosquitto(tmp_path) as broker,
        ingester_process(trained.home, tmp_path, fleet, env=env, broker=broker.url) as ingester,
    ):
        publisher = Publisher(broker.url, fleet, assets=8, readings=40, rate=80.0)
        publisher.start()
        assert wait_for(lambda: len(stored(db, fleet)) >= 40, 30)
        broker.stop()  # mid-stream; the publisher keeps publishing into paho's queue
        assert len(stored(db, fleet)) < len(publisher.expected)
        threading.Event().wait(1.5)
        broker.start()
        publisher.finish()  # reconnected and every publish acknowledged
        assert wait_for(lambda: len(stored(db, fleet)) >= len(publisher.expected), 60), (
            len(stored(db, fleet)),
            ingester.metrics(),
            ingester.log.read_text()[-4000:],
        )
        assert wait_for(ingester.subscribed, 20)
        # Bad messages are counted in /metrics by reason, and the ingester keeps going.
        sender = MqttSender(broker.url)
        assert sender.wait_connected(10)
        for i in range(3):
            sender.publish(topic_for(fleet, "1"), b"not json %d" % i, 0.0)
        assert sender.drain(10)
        sender.close()
        assert wait_for(lambda: ingester.metrics().get(
            'prognos_stream_dead_letters_total{reason="not_json"}') == 3.0, 20)  # fmt: skip
        assert ingester.terminate() == 0
    assert sorted(stored(db, fleet)) == publisher.expected
    assert sorted(d["reason"] for d in dead_letters(db, fleet)) == ["not_json"] * 3
    log = ingester.log.read_text()
    assert "session present: True" in log  # the broker restored the session it saved
    assert "Traceback" not in log and "stopped:" in log
