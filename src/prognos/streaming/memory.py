"""The in-process queue: the broker's contract (topic filters, ``$share`` groups, messages kept
until someone subscribes) in one process, for ``prognos demo`` without a broker, and for tests."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

from prognos.streaming.messages import Message
from prognos.streaming.transport import Inbox


def _matches(topic_filter: str, topic: str) -> bool:
    want, got = topic_filter.split("/"), topic.split("/")
    if want and want[-1] == "#":
        return got[: len(want) - 1] == want[:-1] or want[:-1] == got
    return len(want) == len(got) and all(w in ("+", g) for w, g in zip(want, got, strict=True))


class MemoryBroker:
    """Topics in one process: every subscription whose filter matches gets the message, one
    member per ``$share`` group (round robin). What is published before anyone subscribes is
    kept for the first subscription, as a persistent session would keep it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], list[MemorySubscription]] = {}
        self._turns: dict[tuple[str, str], itertools.count[int]] = {}
        self._held: list[Message] = []

    def subscription(self, topic_filter: str) -> MemorySubscription:
        return MemorySubscription(self, topic_filter)

    def sender(self) -> MemorySender:
        return MemorySender(self)

    def _join(self, member: MemorySubscription) -> None:
        group, pattern = "", member.topic_filter
        if pattern.startswith("$share/"):
            _, group, pattern = pattern.split("/", 2)
        with self._lock:
            key = (group or f"solo-{id(member)}", pattern)
            self._groups.setdefault(key, []).append(member)
            self._turns.setdefault(key, itertools.count())
            held, self._held = self._held, []
        for message in held:
            self._route(message)

    def _leave(self, member: MemorySubscription) -> None:
        with self._lock:
            for members in self._groups.values():
                if member in members:
                    members.remove(member)

    def _route(self, message: Message) -> None:
        with self._lock:
            targets = []
            for key, members in self._groups.items():
                if members and _matches(key[1], message.topic):
                    targets.append(members[next(self._turns[key]) % len(members)])
            if not targets:
                self._held.append(message)
        for target in targets:
            target.deliver(Message(message.topic, message.payload, message.sent_at))


class MemorySubscription:
    source = "memory"

    def __init__(self, broker: MemoryBroker, topic_filter: str) -> None:
        self._broker = broker
        self.topic_filter = topic_filter
        self._inbox: Inbox | None = None
        self.acked = 0

    def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._broker._join(self)

    def deliver(self, message: Message) -> None:
        assert self._inbox is not None
        self._inbox.put(message)

    def ack(self, messages: Sequence[Message]) -> None:
        self.acked += len(messages)

    @property
    def connected(self) -> bool:
        return self._inbox is not None

    def close(self) -> None:
        self._broker._leave(self)


class MemorySender:
    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    def publish(self, topic: str, payload: bytes, sent_at: float) -> None:
        self._broker._route(Message(topic, payload, sent_at))

    def drain(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        return None
