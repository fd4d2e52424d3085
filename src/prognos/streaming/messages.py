"""One stream message: where it is published, what it carries, and its verdict before ingestion.

A message is one reading on ``prognos/<fleet>/<asset_id>/readings`` whose body is exactly what
``POST /readings`` accepts for one reading (:class:`~prognos.ingestion.readings.ReadingIn`); the
publish time travels in an MQTT v5 user property (``sent_at``) so the body stays that. Decoding
gives each message a reading or a dead-letter reason (a short code, the same rule as over HTTP).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from prognos.errors import ReadingRejectedError
from prognos.ingestion.readings import ReadingIn, check_channels
from prognos.ingestion.scoring import ServedModel

TOPIC_ROOT = "prognos"
SENT_AT = "sent_at"  # the user property holding the publish time (epoch seconds)

_BATCH = TypeAdapter(list[ReadingIn])


def topic_for(fleet: str, asset_id: str) -> str:
    return f"{TOPIC_ROOT}/{fleet}/{asset_id}/readings"


def subscription(fleet: str, group: str | None = None) -> str:
    """Every asset of ``fleet``; with ``group``, a ``$share`` subscription whose members split
    the messages between them."""
    pattern = f"{TOPIC_ROOT}/{fleet}/+/readings"
    return f"$share/{group}/{pattern}" if group else pattern


def asset_of(topic: str) -> str | None:
    """The asset id a readings topic names; None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == TOPIC_ROOT and parts[3] == "readings" and parts[2]:
        return parts[2]
    return None


@dataclass
class Message:
    """A received message; ``token`` is what its transport needs to acknowledge it."""

    topic: str
    payload: bytes
    sent_at: float | None = None
    token: Any = None


@dataclass(frozen=True)
class Rejection:
    """Why a message is a dead letter: ``reason`` a short code (``not_json``, ``schema``,
    ``unknown_channel``, ``topic_mismatch``, or an ingestion reason such as ``out_of_order``)."""

    reason: str
    detail: str


@dataclass
class Decoded:
    """A batch's messages split into readings to ingest and dead letters, in arrival order."""

    readings: list[tuple[Message, ReadingIn]] = field(default_factory=list)
    rejected: list[tuple[Message, Rejection]] = field(default_factory=list)


def _field(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def schema_detail(exc: ValidationError) -> str:
    """``field: message; ...`` for the first three errors, as the HTTP 422 detail names them."""
    errors = exc.errors()
    shown = [
        f"{_field(e['loc']) or 'body'}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in errors[:3]
    ]
    if len(errors) > 3:
        shown.append(f"and {len(errors) - 3} more")
    return "; ".join(shown)


def judge(message: Message, model: ServedModel | None) -> ReadingIn | Rejection:
    """One message's verdict: its reading, or why it is a dead letter. The body is read as HTTP
    reads it (``json.loads``, then the pydantic model), so the same payload gets the same
    verdict on both paths."""
    try:
        data = json.loads(message.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejection("not_json", f"not JSON: {exc}")
    try:
        reading = ReadingIn.model_validate(data)
    except ValidationError as exc:
        return Rejection("schema", schema_detail(exc))
    return _check(message, reading, model)


def _check(
    message: Message, reading: ReadingIn, model: ServedModel | None
) -> ReadingIn | Rejection:
    asset = asset_of(message.topic)
    if asset != reading.equipment_id:
        return Rejection(
            "topic_mismatch",
            f"topic {message.topic!r} names asset {asset!r}, the body {reading.equipment_id!r}",
        )
    if model is not None:
        try:
            check_channels(reading, model)
        except ReadingRejectedError as exc:
            return Rejection(exc.reason, str(exc))
    return reading


def decode(messages: Sequence[Message], model: ServedModel | None) -> Decoded:
    """Judge a batch. Clean batches (the usual case) are validated in one pass over one JSON
    array; a batch with any bad message falls back to judging each alone."""
    out = Decoded()
    readings: list[ReadingIn] | None = None
    if messages:
        try:
            readings = _BATCH.validate_json(b"[" + b",".join(m.payload for m in messages) + b"]")
        except (ValidationError, ValueError):
            readings = None
        # A payload holding two values ("{...},{...}") would shift every later one.
        if readings is not None and len(readings) != len(messages):
            readings = None
    verdicts: list[ReadingIn | Rejection]
    if readings is None:
        verdicts = [judge(m, model) for m in messages]
    else:
        verdicts = [_check(m, r, model) for m, r in zip(messages, readings, strict=True)]
    for message, verdict in zip(messages, verdicts, strict=True):
        if isinstance(verdict, Rejection):
            out.rejected.append((message, verdict))
        else:
            out.readings.append((message, verdict))
    return out


def dead_letter_row(
    message: Message, rejection: Rejection, *, fleet: str, source: str
) -> dict[str, Any]:
    """The ``dead_letters`` record of a rejected message. Its id is a hash of the fleet, topic
    and payload, so the same message redelivered after a crash is stored once."""
    digest = hashlib.sha256(b"\x1f".join((fleet.encode(), message.topic.encode(),
                                          message.payload))).hexdigest()  # fmt: skip
    return {
        "id": f"dl_{digest[:32]}",
        "fleet": fleet,
        "source": source,
        "topic": message.topic,
        "asset_id": asset_of(message.topic),
        "reason": rejection.reason,
        "detail": rejection.detail,
        "payload": message.payload,
    }
