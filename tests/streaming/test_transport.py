"""The in-process queue keeps the broker's contract; the inbox batches; broker URLs parse."""

from __future__ import annotations

import asyncio

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from prognos.errors import ConfigError
from prognos.streaming.memory import MemoryBroker
from prognos.streaming.messages import SENT_AT, Message, subscription, topic_for
from prognos.streaming.transport import BrokerUrl, Inbox, SentAt


def test_broker_urls() -> None:
    url = BrokerUrl.parse("mqtt://user:p%40ss@broker.local:1884")
    assert (url.host, url.port, url.username, url.password, url.tls) == (
        "broker.local", 1884, "user", "p@ss", False
    )  # fmt: skip
    assert BrokerUrl.parse("mqtts://b").port == 8883 and BrokerUrl.parse("mqtts://b").tls
    for bad in ("http://b", "mqtt://", "b:1883", "mqtt://b:x"):
        with pytest.raises(ConfigError, match="broker URL"):
            BrokerUrl.parse(bad)


def test_inbox_batches_what_arrived() -> None:
    async def main() -> tuple[list[int], list[int], list[int]]:
        inbox = Inbox()
        inbox.bind(asyncio.get_running_loop())
        empty = await inbox.take(10, 0.0, timeout=0.01)
        for i in range(25):
            inbox.put(Message("t", bytes([i])))
        first = await inbox.take(10, 0.0, timeout=1)
        rest = await inbox.take(100, 0.01, timeout=1)
        return [len(empty)], [m.payload[0] for m in first], [m.payload[0] for m in rest]

    empty, first, rest = asyncio.run(main())
    assert empty == [0] and first == list(range(10)) and rest == list(range(10, 25))


def test_memory_broker_routes_holds_and_shares() -> None:
    async def main() -> tuple[list[str], list[str], list[str], list[str]]:
        loop = asyncio.get_running_loop()
        broker = MemoryBroker()
        sender = broker.sender()
        sender.publish(topic_for("f", "a"), b"early", 1.0)  # held for the first subscriber
        inboxes = [Inbox() for _ in range(4)]
        for inbox in inboxes:
            inbox.bind(loop)
        solo = broker.subscription(subscription("f"))
        solo.start(inboxes[0])
        one, two = (broker.subscription(subscription("f", "g")) for _ in range(2))
        one.start(inboxes[1])
        two.start(inboxes[2])
        other = broker.subscription(subscription("other"))
        other.start(inboxes[3])
        for i in range(6):
            sender.publish(topic_for("f", "a"), str(i).encode(), 1.0)
        taken = [await inbox.take(100, 0.0, timeout=0.1) for inbox in inboxes]
        return [[m.payload.decode() for m in t] for t in taken]  # type: ignore[return-value]

    solo, one, two, other = asyncio.run(main())
    assert solo == ["early", *map(str, range(6))]
    assert sorted(one + two) == list(map(str, range(6))) and one and two
    assert other == []


def test_the_sent_at_property_packs_as_paho_packs_it() -> None:
    for sent_at in (1796287591.123456, 0.0, 1e-7):
        generic = Properties(PacketTypes.PUBLISH)
        generic.UserProperty = (SENT_AT, repr(sent_at))
        assert SentAt(sent_at).pack() == generic.pack()
