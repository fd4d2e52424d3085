"""Where alerts go: a Slack-compatible incoming webhook, a generic JSON webhook, and the log.

Delivery runs on one background thread per notifier (:class:`Dispatcher`), so a receiver that is
slow or down never blocks scoring, the evaluator, or the other notifiers. Each delivery is
retried with exponential backoff; one that still fails is logged (without its URL) and counted.

The webhooks post with httpx (already used by the project) rather than Apprise: Apprise's Slack
plugin posts only to hooks.slack.com, so it cannot reach Slack-compatible receivers (Mattermost,
Rocket.Chat, a local test receiver), and its JSON plugin sends a fixed schema of its own, not
the alert. Webhook URLs are secrets (they carry the token): they come only from Settings as
``SecretStr``, are never logged, and are cut out of any error text.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx
from pydantic import SecretStr

from prognos import __version__
from prognos.config import Settings
from prognos.errors import ConfigError, NotificationError

__all__ = [
    "AlertEvent",
    "Dispatcher",
    "JsonWebhook",
    "LogNotifier",
    "Notifier",
    "SlackWebhook",
    "build_notifiers",
]

log = logging.getLogger("prognos.alerts")

# HTTP statuses worth another try: the receiver is overloaded or restarting.
_RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class AlertEvent:
    """One message about an alert: it fired, it still holds (``repeat``), or it resolved."""

    alert_id: str
    rule: str
    signal: str
    severity: str
    state: Literal["firing", "resolved"]
    fleet: str
    subject: str
    value: float | None
    comparison: str
    threshold: float | None
    started_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    at: datetime
    repeat: bool
    message: str
    description: str

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


class Notifier(Protocol):
    name: str

    def deliver(self, event: AlertEvent) -> None:
        """Deliver once; raise :class:`NotificationError` when it did not arrive."""

    def close(self) -> None: ...


class LogNotifier:
    """Alerts as log lines on ``prognos.alerts``: always on, the record of what was sent."""

    name = "log"

    def deliver(self, event: AlertEvent) -> None:
        level = logging.INFO if event.state == "resolved" else logging.WARNING
        log.log(level, "alert: %s", event.message)

    def close(self) -> None:
        pass


class _Webhook:
    name = "webhook"

    def __init__(
        self,
        url: SecretStr,
        *,
        timeout_seconds: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        raw = url.get_secret_value().strip()
        try:
            scheme = httpx.URL(raw).scheme
        except (httpx.InvalidURL, TypeError):
            scheme = ""
        if scheme not in {"http", "https"}:
            raise ConfigError(f"the {self.name} URL is not an http(s) URL")
        self._timeout = httpx.Timeout(timeout_seconds).as_dict()
        # The transport, not an httpx.Client: a Client logs every request's full URL at INFO
        # ("HTTP Request: POST https://..."), and the URL is the secret.
        self._transport = transport or httpx.HTTPTransport(retries=0)

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        raise NotImplementedError

    def deliver(self, event: AlertEvent) -> None:
        url = self._url.get_secret_value().strip()
        request = httpx.Request(
            "POST",
            url,
            json=self.payload(event),
            headers={"User-Agent": f"prognos/{__version__}"},
            extensions={"timeout": self._timeout},
        )
        try:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.UnsupportedProtocol:
            raise NotificationError(f"{self.name}: unsupported URL", retryable=False) from None
        except httpx.TransportError as exc:
            detail = str(exc).replace(url, "<url>") or "no detail"
            raise NotificationError(
                f"{self.name}: {type(exc).__name__}: {detail}", retryable=True
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status in _RETRY_STATUSES or status >= 500
        raise NotificationError(f"{self.name}: HTTP {status}", retryable=retryable)

    def close(self) -> None:
        self._transport.close()


class SlackWebhook(_Webhook):
    """A Slack incoming webhook or any receiver that takes its payload (Mattermost, ...):
    ``text`` for every client, ``blocks`` where they are understood."""

    name = "slack webhook"

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        value = "no value" if event.value is None else f"{event.value:.4g}"
        context = (
            f"fleet {event.fleet} | value {value} | since {event.started_at:%Y-%m-%d %H:%M} UTC"
        )
        return {
            "text": event.message,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": event.message}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }


class JsonWebhook(_Webhook):
    """Any receiver of JSON: the alert as :meth:`AlertEvent.to_json` gives it."""

    name = "JSON webhook"

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        return event.to_json()


def build_notifiers(settings: Settings) -> list[Notifier]:
    """The log, plus each webhook whose URL the settings hold."""
    notifiers: list[Notifier] = [LogNotifier()]
    if settings.alert_slack_webhook_url is not None:
        notifiers.append(SlackWebhook(settings.alert_slack_webhook_url))
    if settings.alert_webhook_url is not None:
        notifiers.append(JsonWebhook(settings.alert_webhook_url))
    return notifiers


class _Channel:
    """One notifier's queue and delivery thread."""

    def __init__(self, notifier: Notifier, queue_size: int) -> None:
        self.notifier = notifier
        self.queue: queue.Queue[AlertEvent] = queue.Queue(maxsize=queue_size)
        self.thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0


class Dispatcher:
    """Delivers :class:`AlertEvent` s in the background: :meth:`submit` never blocks.

    Retries are a small loop of our own rather than tenacity: the waits must end at once when
    the service stops (``Event.wait``), and which failures are worth retrying is the notifier's
    call (HTTP 5xx, 408, 425, 429 and network errors; not a 4xx that will never pass).
    """

    def __init__(
        self,
        notifiers: Iterable[Notifier],
        *,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self._channels = [_Channel(n, queue_size) for n in notifiers]
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def notifiers(self) -> Sequence[Notifier]:
        return [c.notifier for c in self._channels]

    def start(self) -> None:
        with self._lock:
            self._stop.clear()
            for channel in self._channels:
                if channel.thread is None or not channel.thread.is_alive():
                    channel.thread = threading.Thread(
                        target=self._run,
                        args=(channel,),
                        name=f"prognos-alerts-{channel.notifier.name.replace(' ', '-')}",
                        daemon=True,
                    )
                    channel.thread.start()

    def submit(self, event: AlertEvent) -> None:
        """Queue ``event`` for every notifier (starting the threads on first use); a full
        queue drops it for that notifier, counted and logged."""
        self.start()
        for channel in self._channels:
            try:
                channel.queue.put_nowait(event)
            except queue.Full:
                channel.dropped += 1
                log.error(
                    "alert %s (%s) dropped for the %s: its queue is full",
                    event.rule,
                    event.state,
                    channel.notifier.name,
                )

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued event to be delivered or given up
        on; whether all were."""
        deadline = time.monotonic() + timeout
        for channel in self._channels:
            done = channel.queue.all_tasks_done
            with done:
                while channel.queue.unfinished_tasks:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    done.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop the threads (waits
        between retries end at once) and close the notifiers."""
        self.flush(timeout)
        self._stop.set()
        for channel in self._channels:
            if channel.thread is not None:
                channel.thread.join(timeout=1.0)
            channel.notifier.close()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per notifier: ``delivered``, ``failed`` (after every retry), ``dropped``, ``queued``."""
        return {
            c.notifier.name: {
                "delivered": c.delivered,
                "failed": c.failed,
                "dropped": c.dropped,
                "queued": c.queue.qsize(),
            }
            for c in self._channels
        }

    def _run(self, channel: _Channel) -> None:
        while not self._stop.is_set():
            try:
                event = channel.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._deliver(channel, event)
            finally:
                channel.queue.task_done()

    def _deliver(self, channel: _Channel, event: AlertEvent) -> None:
        notifier = channel.notifier
        reason = "not attempted"
        attempt = 0
        for attempt in range(1, self._attempts + 1):
            try:
                notifier.deliver(event)
            except NotificationError as exc:
                reason = str(exc)
                if not exc.retryable or attempt == self._attempts:
                    break
            except Exception as exc:  # a notifier's bug must not kill its thread
                reason = f"unexpected {type(exc).__name__}"  # its text may hold the URL
                break
            else:
                channel.delivered += 1
                return
            delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
            if self._stop.wait(delay):
                break
        channel.failed += 1
        log.error(
            "alert %s (%s) not delivered to the %s after %d attempt(s): %s",
            event.rule,
            event.state,
            notifier.name,
            attempt,
            reason,
        )
