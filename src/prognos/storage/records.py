"""What a stored record is: its kind, table and key, and the checked, coerced row a table takes.

Every record the service stores (readings, predictions, feedback, audit events, dead letters)
passes :func:`normalise_record` where it is made, so a bad record fails there, naming the field,
and not later in a background writer. Writing and reading them is :mod:`.repository`'s job.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import Table

from prognos.errors import StorageError
from prognos.storage.models import (
    DEFAULT_FLEET,
    FEEDBACK_EVENTS,
    AuditEvent,
    DeadLetter,
    Feedback,
    Prediction,
    Reading,
)

__all__ = ["KINDS", "TABLES", "RecordKind", "new_id", "normalise_record"]

RecordKind = Literal["reading", "prediction", "feedback", "audit", "dead_letter"]
KINDS: tuple[RecordKind, ...] = get_args(RecordKind)

_READINGS: Table = Reading.__table__  # type: ignore[assignment]
_PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]
_FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
_DEAD_LETTERS: Table = DeadLetter.__table__  # type: ignore[assignment]

# kind -> (table, conflict key, id prefix for a client-generated key or None)
TABLES: dict[RecordKind, tuple[Table, tuple[str, ...], str | None]] = {
    "reading": (_READINGS, ("fleet", "asset_id", "time"), None),
    "prediction": (_PREDICTIONS, ("id",), "pred"),
    "feedback": (_FEEDBACK, ("id",), "fb"),
    "audit": (_AUDIT, ("event_id",), "evt"),
    "dead_letter": (_DEAD_LETTERS, ("id",), "dl"),
}


def new_id(kind: RecordKind) -> str:
    """A fresh client-side key, e.g. ``pred_<uuid hex>``: made before a record is queued, so a
    replayed record keeps it and the insert stays idempotent."""
    prefix = TABLES[kind][2]
    if prefix is None:
        raise ValueError(f"{kind} records are keyed by (asset_id, time), not by an id")
    return f"{prefix}_{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------------- normalising


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _datetime(value: Any, kind: str, field: str) -> datetime:
    """An aware UTC datetime from a datetime (naive means UTC) or an ISO string (from a spool)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as err:
            raise StorageError(f"{kind} {field}: {value!r} is not an ISO datetime") from err
    if not isinstance(value, datetime):
        raise StorageError(f"{kind} {field}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json_safe(value: Any, kind: str, field: str) -> Any:
    """Plain JSON values; NaN and infinities become null (PostgreSQL's json rejects them)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, kind, field) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, kind, field) for v in value]
    if isinstance(value, datetime):
        return _datetime(value, kind, field).isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _json_safe(item(), kind, field)
    raise StorageError(f"{kind} {field}: {type(value).__name__} is not JSON-serialisable")


def _float(value: Any, kind: str, field: str, *, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise StorageError(f"{kind} {field}: {value!r} is not a number") from err


def _upper(value: Any, kind: str) -> float | None:
    """An interval's upper end; ``None`` or ``+inf`` (open above) are stored as NULL."""
    upper = _float(value, kind, "rul_upper", nullable=True)
    if upper is not None and math.isnan(upper):
        raise StorageError(f"{kind} rul_upper: NaN is no bound (None or inf: open above)")
    return None if upper is None or upper == math.inf else upper


def _int(value: Any, kind: str, field: str) -> int:
    """A 64-bit integer (the column is a BIGINT)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise StorageError(f"{kind} {field}: {value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise StorageError(f"{kind} {field}: {value!r} is not an integer") from err
    if not -(2**63) <= number < 2**63:
        raise StorageError(f"{kind} {field}: {value!r} does not fit in 64 bits")
    return number


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


_REQUIRED: dict[RecordKind, frozenset[str]] = {
    "reading": frozenset({"asset_id", "time", "values"}),
    "prediction": frozenset(
        {
            "asset_id",
            "time",
            "model_name",
            "model_version",
            "failure_probability",
            "risk_level",
            "rul",
            "rul_lower",
            "rul_upper",
            "should_inspect",
        }
    ),
    "feedback": frozenset({"asset_id", "failure_occurred"}),
    "audit": frozenset({"actor", "action", "subject"}),
    "dead_letter": frozenset({"source", "reason", "detail", "payload"}),
}


def normalise_record(kind: RecordKind, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as the table stores it: keys checked, types coerced, ids and timestamps defaulted.

    Raises :class:`StorageError` naming the field for a missing, unknown or malformed one, so a bad
    record fails where it is made and not later in a background writer.
    """
    if kind not in TABLES:
        raise ValueError(f"unknown record kind {kind!r}: expected one of {', '.join(KINDS)}")
    table = TABLES[kind][0]
    allowed = {c.name for c in table.columns} - ({"id"} if kind in ("reading", "audit") else set())
    unknown = set(row) - allowed
    if unknown:
        raise StorageError(f"{kind} record has unknown fields: {', '.join(sorted(unknown))}")
    missing = _REQUIRED[kind] - set(row)
    if missing:
        raise StorageError(f"{kind} record is missing: {', '.join(sorted(missing))}")
    if kind == "reading":
        values = row["values"]
        if not isinstance(values, Mapping):
            raise StorageError("reading values: expected a mapping of channel -> value")
        return {
            "fleet": str(row.get("fleet") or DEFAULT_FLEET),
            "asset_id": str(row["asset_id"]),
            "time": _int(row["time"], kind, "time"),
            "values": {
                str(k): _float(v, kind, f"values[{k}]", nullable=True)
                for k, v in _json_safe(values, kind, "values").items()
            },
            "received_at": _datetime(row.get("received_at") or _utcnow(), kind, "received_at"),
        }
    if kind == "prediction":
        explanation = row.get("explanation")
        if explanation is not None and not isinstance(explanation, Mapping | list | tuple):
            raise StorageError("prediction explanation: expected a JSON object, a list or null")
        return {
            "id": str(row.get("id") or new_id(kind)),
            "fleet": str(row.get("fleet") or DEFAULT_FLEET),
            "asset_id": str(row["asset_id"]),
            "time": _int(row["time"], kind, "time"),
            "created_at": _datetime(row.get("created_at") or _utcnow(), kind, "created_at"),
            "model_name": str(row["model_name"]),
            "model_version": str(row["model_version"]),
            "failure_probability": _float(row["failure_probability"], kind, "failure_probability"),
            "risk_level": str(row["risk_level"]),
            "rul": _float(row["rul"], kind, "rul"),
            "rul_lower": _float(row["rul_lower"], kind, "rul_lower"),
            "rul_upper": _upper(row["rul_upper"], kind),
            "should_inspect": bool(row["should_inspect"]),
            "explanation": _json_safe(explanation, kind, "explanation"),
            "latency_ms": _float(row.get("latency_ms"), kind, "latency_ms", nullable=True),
            # Always present: one insert statement takes its columns from a batch's first row.
            "shadow": bool(row.get("shadow") or False),
        }
    if kind == "feedback":
        failure_time, failure_cycle = row.get("failure_time"), row.get("failure_cycle")
        feedback = {
            "id": str(row.get("id") or new_id(kind)),
            "prediction_id": _optional_str(row.get("prediction_id")),
            "fleet": str(row.get("fleet") or DEFAULT_FLEET),
            "asset_id": str(row["asset_id"]),
            "failure_occurred": bool(row["failure_occurred"]),
            "failure_time": None
            if failure_time is None
            else _datetime(failure_time, kind, "failure_time"),
            "failure_cycle": None
            if failure_cycle is None
            else _int(failure_cycle, kind, "failure_cycle"),
            "failure_type": _optional_str(row.get("failure_type")),
            "notes": _optional_str(row.get("notes")),
            "created_at": _datetime(row.get("created_at") or _utcnow(), kind, "created_at"),
            "submitted_by": _optional_str(row.get("submitted_by")),
            "event": _feedback_event(row),
        }
        for field, value in feedback.items():
            # PostgreSQL refuses NUL in text: refused here, before the record is acknowledged.
            if isinstance(value, str) and "\x00" in value:
                raise StorageError(f"feedback {field}: text must not contain NUL")
        return feedback
    if kind == "dead_letter":
        return _dead_letter(row)
    details = row.get("details") or {}
    if not isinstance(details, Mapping):
        raise StorageError("audit details: expected a mapping")
    return {
        "event_id": str(row.get("event_id") or new_id(kind)),
        "at": _datetime(row.get("at") or _utcnow(), kind, "at"),
        "actor": str(row["actor"]),
        "action": str(row["action"]),
        "subject": str(row["subject"]),
        "details": _json_safe(details, kind, "details"),
    }


def _feedback_event(row: Mapping[str, Any]) -> str:
    """The row's event (revision 0005), by default what ``failure_occurred`` says."""
    event = row.get("event") or ("failure" if row["failure_occurred"] else "inspection")
    if event not in FEEDBACK_EVENTS:
        raise StorageError(f"feedback event: {event!r} is not one of {', '.join(FEEDBACK_EVENTS)}")
    return str(event)


# A dead letter keeps at most this much of its payload and reason text.
DEAD_LETTER_PAYLOAD_CHARS = 65_536
DEAD_LETTER_DETAIL_CHARS = 2_000


def _text(value: Any, limit: int) -> str:
    """Text PostgreSQL accepts (no NUL), bytes decoded with ``\\x`` escapes, cut at ``limit``."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="backslashreplace")
    return str(value).replace("\x00", "\\x00")[:limit]


def _dead_letter(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row.get("id") or new_id("dead_letter")),
        "received_at": _datetime(row.get("received_at") or _utcnow(), "dead_letter", "at"),
        "fleet": _text(row.get("fleet") or DEFAULT_FLEET, 200),
        "source": _text(row["source"], 40),
        "topic": None if row.get("topic") is None else _text(row["topic"], 1000),
        "asset_id": None if row.get("asset_id") is None else _text(row["asset_id"], 200),
        "reason": _text(row["reason"], 64),
        "detail": _text(row["detail"], DEAD_LETTER_DETAIL_CHARS),
        "payload": _text(row["payload"], DEAD_LETTER_PAYLOAD_CHARS),
    }
