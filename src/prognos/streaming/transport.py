"""Transports: the MQTT broker (paho-mqtt 2, MQTT v5) or an in-process queue, one interface.

A :class:`Subscription` hands messages to an :class:`Inbox` and acknowledges them when told; a
:class:`Sender` publishes. The MQTT ones keep a persistent session (``clean_start=False`` with a
session-expiry interval), so what is published while an ingester is down waits for it; QoS 1
with ``manual_ack``, so a message is acknowledged only once its reading is durable and is
redelivered if the ingester dies first; paho reconnects with backoff and resends unacknowledged
publishes. ``memory.MemoryBroker`` is the same contract in one process, for the demo and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.subscribeoptions import SubscribeOptions

from prognos.errors import ConfigError, StreamError
from prognos.streaming.messages import SENT_AT, Message

log = logging.getLogger("prognos.streaming")

RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 10


class Inbox:
    """Messages from a transport's thread to the ingester's event loop, taken in batches."""

    def __init__(self) -> None:
        self._items: deque[Message] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._signalled = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._event = loop, asyncio.Event()

    def put(self, message: Message) -> None:
        """From any thread. Append first, then signal: a taker that reset the flag drains after,
        so it sees the message either way."""
        self._items.append(message)
        if not self._signalled and self._loop is not None and self._event is not None:
            self._signalled = True
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is taking any more
                self._loop.call_soon_threadsafe(self._event.set)

    def __len__(self) -> int:
        return len(self._items)

    async def take(self, most: int, linger: float, timeout: float) -> list[Message]:
        """Up to ``most`` messages: waits up to ``timeout`` for the first, then up to ``linger``
        seconds for the batch to fill; [] on timeout."""
        assert self._event is not None, "Inbox.bind() was not called"
        if not self._items:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        self._signalled = False
        if self._items and linger > 0 and len(self._items) < most:
            await asyncio.sleep(linger)
        batch: list[Message] = []
        while self._items and len(batch) < most:
            batch.append(self._items.popleft())
        return batch


class Subscription(Protocol):
    source: str  # the dead letters' ``source``: "mqtt", "memory"

    def start(self, inbox: Inbox) -> None: ...

    def ack(self, messages: Sequence[Message]) -> None: ...

    @property
    def connected(self) -> bool: ...

    def close(self) -> None: ...


class Sender(Protocol):
    def publish(self, topic: str, payload: bytes, sent_at: float) -> None: ...

    def drain(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------ MQTT


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """``mqtt://[user:pass@]host[:1883]`` or ``mqtts://...`` (TLS, port 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ConfigError(f"broker URL {url!r}: expected mqtt://[user:pass@]host[:port]")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(f"broker URL {url!r}: bad port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def _client(url: BrokerUrl, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set_context(ssl.create_default_context())
    client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
    return client


def _connect(client: mqtt.Client, url: BrokerUrl, expiry: int, receive_maximum: int) -> None:
    """Connect in the background: paho's thread retries with backoff until the broker answers,
    and reconnects (same persistent session) whenever the connection drops."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = expiry
    properties.ReceiveMaximum = receive_maximum
    client.connect_async(url.host, url.port, keepalive=30, clean_start=False,
                         properties=properties)  # fmt: skip
    client.loop_start()


class MqttSubscription:
    """A persistent QoS 1 subscription acknowledged by hand (see the module docstring).

    Each connection has a generation; an acknowledgement is sent only on the connection its
    message came by. After a reconnect the broker redelivers what was not acknowledged (with
    the same packet ids, which a stale acknowledgement could otherwise confirm for another
    message), and the redelivered copies are acknowledged instead.
    """

    source = "mqtt"

    def __init__(
        self,
        url: str,
        topic_filter: str,
        *,
        client_id: str,
        session_expiry: int = 86_400,
        receive_maximum: int = 20_000,
    ) -> None:
        self._url = BrokerUrl.parse(url)
        self._filter = topic_filter
        self._expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._client = _client(self._url, client_id)
        self._inbox: Inbox | None = None
        self._generation = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._closing = False
        self.connects = 0

    def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        client = self._client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        _connect(client, self._url, self._expiry, self._receive_maximum)

    @property
    def connected(self) -> bool:
        """Connected and subscribed: messages are flowing."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def _on_connect(self, client: mqtt.Client, _: Any, flags: Any, reason: Any, __: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        self._connected.set()
        log.info("connected to %s:%d (session present: %s)", self._url.host, self._url.port,
                 flags.session_present)  # fmt: skip
        client.subscribe(self._filter, options=SubscribeOptions(qos=1))

    def _on_subscribe(self, _: mqtt.Client, __: Any, ___: int, reasons: Any, ____: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("the broker refused the subscription to %s: %s", self._filter, reasons)
            return
        log.info("subscribed to %s", self._filter)
        self._subscribed.set()

    def _on_disconnect(self, _: mqtt.Client, __: Any, ___: Any, reason: Any, ____: Any) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if not self._closing:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _: mqtt.Client, __: Any, message: mqtt.MQTTMessage) -> None:
        assert self._inbox is not None
        sent_at = None
        properties = getattr(message, "properties", None)
        for key, value in getattr(properties, "UserProperty", None) or ():
            if key == SENT_AT:
                with contextlib.suppress(ValueError):
                    sent_at = float(value)
        token = (self._generation, message.mid, message.qos)
        self._inbox.put(Message(message.topic, bytes(message.payload), sent_at, token))

    def ack(self, messages: Sequence[Message]) -> None:
        with self._lock:
            generation = self._generation
        for message in messages:
            sent_on, mid, qos = message.token
            if sent_on == generation and qos > 0:
                self._client.ack(mid, qos)

    def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()


_SENT_AT_KEY = len(SENT_AT).to_bytes(2, "big") + SENT_AT.encode()


class SentAt(Properties):
    """PUBLISH properties holding just the ``sent_at`` user property, packed directly: paho's
    generic :class:`Properties` costs about a third of a publish. Packs to the same bytes."""

    _sent_at: str

    def __init__(self, sent_at: float) -> None:  # paho's __init__/__setattr__ are the cost
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "_sent_at", repr(sent_at))

    def pack(self) -> bytes:
        value = self._sent_at.encode()
        body = b"\x26" + _SENT_AT_KEY + len(value).to_bytes(2, "big") + value
        return VariableByteIntegers.encode(len(body)) + body

    def __str__(self) -> str:
        return f"[UserProperty : [('{SENT_AT}', '{self._sent_at}')]]"


class MqttSender:
    """QoS 1 publishes; paho queues them while the broker is away and resends what the broker
    did not acknowledge when it is back. Acknowledgements are counted (``on_publish``), so
    :meth:`drain` knows when every publish so far has been taken by the broker."""

    def __init__(self, url: str, *, client_id: str | None = None, session_expiry: int = 300):
        self._url = BrokerUrl.parse(url)
        self._client = _client(self._url, client_id or f"prognos-pub-{uuid.uuid4().hex[:12]}")
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self._client.on_connect = lambda *_: self._connected.set()
        self._client.on_disconnect = lambda *_: self._connected.clear()
        self._client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self.sent = self.acknowledged = self.refused = 0
        _connect(self._client, self._url, session_expiry, 65_535)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_publish(self, _: mqtt.Client, __: Any, ___: int, reason: Any, ____: Any) -> None:
        with self._lock:
            self.acknowledged += 1
            if reason.is_failure:
                self.refused += 1

    def publish(self, topic: str, payload: bytes, sent_at: float) -> None:
        info = self._client.publish(topic, payload, qos=1, properties=SentAt(sent_at))
        # Not connected: queued in paho and sent once the broker is back.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise StreamError(f"cannot publish to {topic!r}: {mqtt.error_string(info.rc)}")
        self.sent += 1

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return self.sent - self.acknowledged

    def drain(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every publish; False on timeout or when it
        refused some."""
        deadline = time.monotonic() + timeout
        while self.unacknowledged > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return self.refused == 0

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
