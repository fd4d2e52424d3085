"""Kafka transports (confluent-kafka / librdkafka): the :class:`~prognos.streaming.transport`
``Subscription`` and ``Sender`` contracts over a Kafka consumer group, for plants whose bus is
Kafka. Same guarantees as MQTT:

* **At least once, acknowledged when durable.** Auto-commit is off. :meth:`KafkaSubscription.ack`
  (called once a batch is durable) records, per partition, the offset after the last message
  acknowledged; the consumer's thread commits it. A process that dies before that commits
  nothing for the batch, so the group reads it again; ingestion is idempotent per (fleet,
  asset, time), so a redelivered reading is a duplicate, never a second row.
* **Only a partition's owner commits it.** Offsets of a partition revoked in a rebalance (or
  lost when the session timed out in an outage) are dropped: its owner reads again from the last
  commit, at least once. An outage shorter than the session loses and repeats nothing: the
  offsets wait and are committed when the broker answers.
* **Reconnect.** librdkafka reconnects and rejoins the group by itself; :attr:`connected` says
  whether a broker is up now.
* **Bounded.** At most ``max_unacked`` messages are handed over and not acknowledged; past that
  the partitions are paused (Kafka may hold days of backlog; the inbox must not).
* **Ordering** holds per partition. Records are keyed by asset id (:class:`KafkaSender` does
  so), so each asset's readings stay in one partition, in order. A record's key names its asset:
  it becomes the message's ``prognos/<fleet>/<key>/readings`` topic, checked against the body.

One Kafka topic per fleet, ``prognos.<fleet>.readings`` unless named. The consumer is used only
on its own thread (librdkafka's callbacks run there too); :meth:`ack` only hands offsets over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as Record

from prognos.errors import ConfigError
from prognos.streaming.messages import SENT_AT, Message, asset_of, topic_for
from prognos.streaming.transport import Inbox

log = logging.getLogger("prognos.streaming.kafka")
_librdkafka = logging.getLogger("prognos.streaming.kafka.librdkafka")

SCHEMES = {"kafka": ("PLAINTEXT", "SASL_PLAINTEXT"), "kafkas": ("SSL", "SASL_SSL")}
POLL_SECONDS = 0.1
BATCH = 500  # most records taken from librdkafka's queue at once
RETRY_SECONDS = 1.0  # after a commit failed (e.g. while the member rejoins)
Where = tuple[str, int]  # (Kafka topic, partition)


def kafka_topic(fleet: str) -> str:
    return f"prognos.{fleet}.readings"


def kafka_config(url: str) -> dict[str, str]:
    """librdkafka settings for ``kafka://[user:pass@]host:port[,host:port]`` (``kafkas://`` for
    TLS; ``?mechanism=SCRAM-SHA-256`` picks the SASL mechanism, PLAIN by default)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"Kafka URL {url!r}: expected kafka[s]://[user:pass@]host:port[,...]")
    hosts = parts.netloc.rpartition("@")[2]
    servers = [h.strip() for h in hosts.split(",") if h.strip()]
    if not servers or any(not s.rpartition(":")[2].isdigit() for s in servers):
        raise ConfigError(f"Kafka URL {url!r}: brokers go as host:port[,host:port]")
    plain, sasl = SCHEMES[parts.scheme]
    config = {"bootstrap.servers": ",".join(servers), "security.protocol": plain}
    if parts.username:
        config.update(
            {
                "security.protocol": sasl,
                "sasl.mechanism": parse_qs(parts.query).get("mechanism", ["PLAIN"])[0],
                "sasl.username": unquote(parts.username),
                "sasl.password": unquote(parts.password or ""),
            }
        )
    return config


def _sent_at(record: Record) -> float | None:
    headers = record.headers() or []
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == SENT_AT and value is not None:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                return float(value)
    kind, millis = record.timestamp()  # kind 0: TIMESTAMP_NOT_AVAILABLE
    return None if kind == 0 else float(millis) / 1000


class KafkaSubscription:
    """Member ``group`` of the consumer group reading ``fleet``'s topic (see the module
    docstring). ``session_timeout_ms`` bounds how long a dead member holds its partitions."""

    source = "kafka"

    def __init__(
        self,
        url: str,
        fleet: str,
        *,
        group: str,
        topic: str | None = None,
        client_id: str = "prognos",
        session_timeout_ms: int = 10_000,
        max_unacked: int = 20_000,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.fleet = fleet
        self.topic = topic or kafka_topic(fleet)
        self.max_unacked = max_unacked
        self._config: dict[str, Any] = {
            **kafka_config(url),
            "group.id": group,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(100, session_timeout_ms // 4),
            "statistics.interval.ms": 1000,
            "stats_cb": self._on_stats,
            "error_cb": self._on_error,
            "on_commit": self._on_commit,
            "logger": _librdkafka,
            "log.connection.close": False,
            **(options or {}),
        }
        self._inbox: Inbox | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._assigned_event = threading.Event()
        self._lock = threading.Lock()  # guards _acked and _unacked (ack runs on the loop)
        self._acked: dict[Where, int] = {}
        self._unacked = 0
        # Only on the consumer's thread:
        self._assigned: set[Where] = set()
        self._pending: dict[Where, int] = {}
        self._in_flight: set[Where] = set()
        self._paused = False
        self._up = False
        self._retry_at = 0.0
        self.committed = 0  # partitions' commits the broker confirmed (for tests and /metrics)

    # -- Subscription --------------------------------------------------------------------------

    def start(self, inbox: Inbox) -> None:
        """Subscribe and hand messages to ``inbox`` from a thread of our own; the brokers are
        reached in the background (and again after every outage)."""
        try:
            consumer = Consumer(self._config)
        except KafkaException as exc:
            raise ConfigError(f"Kafka settings refused: {exc.args[0]}") from exc
        self._inbox = inbox
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)  # fmt: skip
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name="prognos-kafka", daemon=True
        )
        self._thread.start()

    def ack(self, messages: Sequence[Message]) -> None:
        """Messages whose readings (or dead letters) are durable: commit up to them."""
        with self._lock:
            for message in messages:
                topic, partition, offset = message.token
                where = (topic, partition)
                self._acked[where] = max(self._acked.get(where, 0), offset + 1)
            self._unacked = max(0, self._unacked - len(messages))

    @property
    def connected(self) -> bool:
        return self._up

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the group assigned this member its partitions."""
        return self._assigned_event.wait(timeout)

    @property
    def uncommitted(self) -> int:
        """Partitions whose acknowledged offsets the broker has not confirmed yet."""
        with self._lock:
            waiting = set(self._acked)
        return len(waiting | set(dict(self._pending)))

    def close(self) -> None:
        """Commit what was acknowledged (when a broker is up), then leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # -- the consumer's thread -----------------------------------------------------------------

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                self._commit(consumer)
                room = self._throttle(consumer)
                first = consumer.poll(POLL_SECONDS)
                if first is None:
                    continue
                more = consumer.consume(min(BATCH, room) - 1, 0) if room > 1 else []
                self._hand_over([first, *more])
            self._commit(consumer)
            deadline = time.monotonic() + 5.0
            while self._in_flight and self._up and time.monotonic() < deadline:
                consumer.poll(POLL_SECONDS)  # serves the commit results
        except KafkaException as exc:  # a fatal error: the consumer cannot go on
            log.error("Kafka consumer stopped: %s", exc.args[0])
        finally:
            self._up = False
            consumer.close()
            left = len(self._pending) + len(self._acked)
            if left:
                log.warning("closed with %d partitions' offsets uncommitted: read again", left)

    def _hand_over(self, records: list[Record]) -> None:
        messages = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka: %s", error.str())
                continue
            key = record.key()
            asset = key.decode(errors="replace") if isinstance(key, bytes) else (key or "")
            token = (record.topic(), record.partition(), record.offset())
            payload = record.value()
            body = payload.encode() if isinstance(payload, str) else payload or b""
            messages.append(Message(topic_for(self.fleet, asset), body, _sent_at(record), token))
        with self._lock:
            self._unacked += len(messages)
        assert self._inbox is not None
        for message in messages:
            self._inbox.put(message)

    def _throttle(self, consumer: Consumer) -> int:
        """How many more messages may be handed over; none: the partitions are paused (again
        each turn, as a rebalance unpauses), and resumed once acknowledgements make room."""
        with self._lock:
            room = self.max_unacked - self._unacked
        if room <= 0 or self._paused:
            partitions = consumer.assignment()
            if room <= 0:
                consumer.pause(partitions)
            elif partitions:
                consumer.resume(partitions)
            self._paused = room <= 0
        return room

    def _commit(self, consumer: Consumer) -> None:
        with self._lock:
            acked, self._acked = self._acked, {}
        for where, offset in acked.items():
            self._pending[where] = max(self._pending.get(where, 0), offset)
        dropped = [w for w in self._pending if w not in self._assigned]
        for where in dropped:  # no longer ours: its owner reads from the last commit
            del self._pending[where]
        due = [w for w in self._pending if w not in self._in_flight]
        if not due or not self._up or time.monotonic() < self._retry_at:
            return
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, self._pending[(t, p)]) for t, p in due],
                asynchronous=True,
            )
        except KafkaException as exc:
            log.warning("Kafka commit not sent, kept: %s", exc.args[0])
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return
        self._in_flight.update(due)

    # -- librdkafka callbacks (on the consumer's thread, inside poll) --------------------------

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            where = (tp.topic, tp.partition)
            self._in_flight.discard(where)
            failed = error or tp.error
            if failed is not None:
                log.warning("Kafka commit of %s[%d] failed, kept: %s", *where, failed)
                self._retry_at = time.monotonic() + RETRY_SECONDS
            elif self._pending.get(where, -1) <= tp.offset:
                self._pending.pop(where, None)
                self.committed += 1

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        self._assigned_event.set()
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        log.info("revoked %s", _names(partitions))

    def _on_stats(self, stats: str) -> None:
        brokers = json.loads(stats).get("brokers", {}).values()
        up = any(b.get("nodeid", -1) >= 0 and b.get("state") == "UP" for b in brokers)
        if up != self._up:
            log.info("Kafka broker %s", "up" if up else "away, reconnecting")
        self._up = up

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._up = False
        level = logging.ERROR if error.fatal() else logging.WARNING
        log.log(level, "Kafka: %s", error.str())


class KafkaSender:
    """Publishes a ``prognos/<fleet>/<asset>/readings`` message to the fleet's Kafka topic,
    keyed by asset, ``sent_at`` in a header; acks from every in-sync replica, idempotent, and
    retried while the broker is away (librdkafka queues them), as MQTT's QoS 1 resends."""

    def __init__(
        self,
        url: str,
        *,
        topic: str | None = None,
        client_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.failed = 0
        config: dict[str, Any] = {
            **kafka_config(url),
            "client.id": client_id or f"prognos-pub-{uuid.uuid4().hex[:12]}",
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 0,  # never give up; drain() says when it is all acknowledged
            "linger.ms": 5,
            "logger": _librdkafka,
            **(options or {}),
        }
        self._producer = Producer(config)

    def wait_connected(self, timeout: float) -> bool:
        """True once a broker answered a metadata request."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def publish(self, topic: str, payload: bytes, sent_at: float) -> None:
        parts = topic.split("/")
        asset = asset_of(topic)
        if asset is None:
            raise ConfigError(f"cannot publish to {topic!r}: not a prognos readings topic")
        target = self.topic or kafka_topic(parts[1])
        while True:
            try:
                self._producer.produce(target, payload, key=asset.encode(),
                                       headers=[(SENT_AT, repr(sent_at).encode())],
                                       on_delivery=self._delivered)  # fmt: skip
                break
            except BufferError:  # librdkafka's queue is full: wait for the broker to take some
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, record: Record) -> None:
        if error is not None:
            self.failed += 1
            log.error("Kafka refused a reading for %s: %s", record.topic(), error.str())

    def drain(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every publish; False on timeout or refusal."""
        return self._producer.flush(timeout) == 0 and self.failed == 0

    @property
    def unacknowledged(self) -> int:
        return len(self._producer)

    def close(self) -> None:
        self._producer.flush(5.0)


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
