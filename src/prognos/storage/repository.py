"""Reads and writes of the prediction service's records: plain functions over a :class:`Database`
(API keys are in :mod:`.api_keys`).

Every insert is idempotent (``INSERT ... ON CONFLICT DO NOTHING`` on the record's natural or
client-generated key), so a writer may replay a spool any number of times without duplicating or
failing. Rows go in and come out as plain dicts; datetimes come out timezone-aware (UTC).
SQLAlchemy errors leave this module as :class:`~prognos.errors.StorageError` or
:class:`~prognos.errors.StorageUnavailableError`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from sqlalchemy import Table, false, func, select
from sqlalchemy.engine import Connection, RowMapping

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

if TYPE_CHECKING:
    import pandas as pd

    from prognos.storage.database import Database

__all__ = [
    "KINDS",
    "RecordKind",
    "audit_events",
    "feedback_labels",
    "get_prediction",
    "insert_audit",
    "insert_feedback",
    "insert_ignore",
    "insert_predictions",
    "insert_readings",
    "insert_records",
    "latest_predictions",
    "new_id",
    "normalise_record",
    "predictions_for_asset",
    "readings_for_asset",
]

RecordKind = Literal["reading", "prediction", "feedback", "audit", "dead_letter"]
KINDS: tuple[RecordKind, ...] = get_args(RecordKind)

_READINGS: Table = Reading.__table__  # type: ignore[assignment]
_PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]
_FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
_DEAD_LETTERS: Table = DeadLetter.__table__  # type: ignore[assignment]

# kind -> (table, conflict key, id prefix for a client-generated key or None)
_TABLES: dict[RecordKind, tuple[Table, tuple[str, ...], str | None]] = {
    "reading": (_READINGS, ("fleet", "asset_id", "time"), None),
    "prediction": (_PREDICTIONS, ("id",), "pred"),
    "feedback": (_FEEDBACK, ("id",), "fb"),
    "audit": (_AUDIT, ("event_id",), "evt"),
    "dead_letter": (_DEAD_LETTERS, ("id",), "dl"),
}


def new_id(kind: RecordKind) -> str:
    """A fresh client-side key, e.g. ``pred_<uuid hex>``: made before a record is queued, so a
    replayed record keeps it and the insert stays idempotent."""
    prefix = _TABLES[kind][2]
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
    if kind not in _TABLES:
        raise ValueError(f"unknown record kind {kind!r}: expected one of {', '.join(KINDS)}")
    table = _TABLES[kind][0]
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


# -------------------------------------------------------------------------------------- writing


def insert_ignore(conn: Connection, kind: RecordKind, rows: Sequence[dict[str, Any]]) -> int:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``; the number of rows actually inserted."""
    if not rows:
        return 0
    table, key, _ = _TABLES[kind]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(key))
    else:
        from sqlalchemy.dialects import sqlite

        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))
    # RETURNING counts exactly the new rows; executemany rowcounts differ between drivers.
    return len(conn.execute(stmt.returning(table.c[key[0]]), list(rows)).all())


def insert_records(
    db: Database,
    records: Mapping[RecordKind, Iterable[Mapping[str, Any]]],
    *,
    normalised: bool = False,
) -> dict[RecordKind, int]:
    """Insert records of several kinds in one transaction; new rows per kind.

    All or nothing: a writer that fails part-way can simply write (or spool) the batch again.
    ``normalised=True`` skips :func:`normalise_record` for rows that already went through it
    (the writer's queue), which is most of the writer thread's Python time.
    """
    prepared = {
        kind: [
            (row if isinstance(row, dict) else dict(row))
            if normalised
            else normalise_record(kind, row)
            for row in rows
        ]
        for kind, rows in records.items()
    }
    with db.begin("inserting records") as conn:
        return {kind: insert_ignore(conn, kind, rows) for kind, rows in prepared.items()}


def insert_readings(db: Database, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert readings (asset_id, time, values, received_at); an existing (asset_id, time) is
    skipped. Returns the number newly inserted."""
    return insert_records(db, {"reading": rows})["reading"]


def insert_predictions(db: Database, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert predictions; one whose id exists is skipped. Returns the number newly inserted."""
    return insert_records(db, {"prediction": rows})["prediction"]


def insert_feedback(db: Database, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert feedback; one whose id exists is skipped. Returns the number newly inserted."""
    return insert_records(db, {"feedback": rows})["feedback"]


def insert_audit(db: Database, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert audit events; one whose event_id exists is skipped. Returns the number inserted."""
    return insert_records(db, {"audit": rows})["audit"]


# -------------------------------------------------------------------------------------- reading


def _dict(row: RowMapping) -> dict[str, Any]:
    return dict(row)


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def get_prediction(db: Database, prediction_id: str) -> dict[str, Any] | None:
    """One stored prediction by id, or None (it may still be queued: ask the writer).

    Served predictions only: a challenger's shadow prediction (never returned to a client, so
    never explained or judged by id) is not found.
    """
    p = _PREDICTIONS.c
    stmt = select(_PREDICTIONS).where(p.id == prediction_id, p.shadow == false())
    with db.translate_errors("reading a prediction"), db.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return None if row is None else _dict(row)


def predictions_for_asset(db: Database, asset_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """An asset's served predictions (no shadow ones), newest (by reading time, then creation)
    first."""
    _check_limit(limit)
    p = _PREDICTIONS.c
    stmt = (
        select(_PREDICTIONS)
        .where(p.asset_id == str(asset_id), p.shadow == false())
        .order_by(p.time.desc(), p.created_at.desc(), p.id.desc())
        .limit(limit)
    )
    with db.translate_errors("reading predictions"), db.engine.connect() as conn:
        return [_dict(r) for r in conn.execute(stmt).mappings()]


def latest_predictions(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """Each asset's latest served prediction (no shadow ones), riskiest (highest failure
    probability) first.

    One query with a window function (SQLite >= 3.25 and PostgreSQL); "latest" is the newest
    reading time, then the newest creation, so a re-run for the same time replaces the old one.
    """
    _check_limit(limit)
    p = _PREDICTIONS.c
    rank = (
        func.row_number()
        .over(partition_by=p.asset_id, order_by=(p.time.desc(), p.created_at.desc(), p.id.desc()))
        .label("recency")
    )
    ranked = select(_PREDICTIONS, rank).where(p.shadow == false()).subquery()
    stmt = (
        select(*(ranked.c[c.name] for c in _PREDICTIONS.columns))
        .where(ranked.c.recency == 1)
        .order_by(ranked.c.failure_probability.desc(), ranked.c.asset_id)
        .limit(limit)
    )
    with db.translate_errors("reading the latest predictions"), db.engine.connect() as conn:
        return [_dict(r) for r in conn.execute(stmt).mappings()]


def readings_for_asset(db: Database, asset_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """An asset's latest ``limit`` readings, in time order (oldest first, as features want)."""
    _check_limit(limit)
    r = _READINGS.c
    stmt = select(_READINGS).where(r.asset_id == str(asset_id)).order_by(r.time.desc()).limit(limit)
    with db.translate_errors("reading readings"), db.engine.connect() as conn:
        rows = [_dict(row) for row in conn.execute(stmt).mappings()]
    rows.reverse()
    return rows


FEEDBACK_LABEL_COLUMNS = [
    "feedback_id",
    "asset_id",
    "prediction_id",
    "prediction_time",
    "model_name",
    "model_version",
    "predicted_rul",
    "predicted_failure_probability",
    "failure_occurred",
    "failure_time",
    "failure_cycle",
    "failure_type",
    "created_at",
    "submitted_by",
]


def feedback_labels(db: Database) -> pd.DataFrame:
    """Every feedback row with the prediction it answers (where that prediction is stored).

    The labels monitoring and retraining consume: what was predicted next to what happened. The
    prediction columns are null for feedback without a (stored) prediction.
    """
    import pandas as pd

    f, p = _FEEDBACK.c, _PREDICTIONS.c
    stmt = (
        select(
            f.id.label("feedback_id"),
            f.asset_id,
            f.prediction_id,
            p.time.label("prediction_time"),
            p.model_name,
            p.model_version,
            p.rul.label("predicted_rul"),
            p.failure_probability.label("predicted_failure_probability"),
            f.failure_occurred,
            f.failure_time,
            f.failure_cycle,
            f.failure_type,
            f.created_at,
            f.submitted_by,
        )
        .select_from(_FEEDBACK.outerjoin(_PREDICTIONS, p.id == f.prediction_id))
        .order_by(f.created_at, f.id)
    )
    with db.translate_errors("reading feedback labels"), db.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(stmt)]
    frame = pd.DataFrame.from_records(rows, columns=FEEDBACK_LABEL_COLUMNS)
    for column in ("failure_time", "created_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("predicted_rul", "predicted_failure_probability"):
        frame[column] = frame[column].astype("float64")
    for column in ("prediction_time", "failure_cycle"):
        frame[column] = frame[column].astype("Int64")
    frame["failure_occurred"] = frame["failure_occurred"].astype(bool)
    return frame


def audit_events(
    db: Database, limit: int = 100, *, action: str | None = None, subject: str | None = None
) -> list[dict[str, Any]]:
    """The newest audit events first; ``action`` keeps those whose action starts with it
    (``retrain.`` for every retraining step), ``subject`` those about exactly that subject."""
    _check_limit(limit)
    a = _AUDIT.c
    stmt = select(_AUDIT)
    if action:
        stmt = stmt.where(a.action.startswith(action, autoescape=True))
    if subject is not None:
        stmt = stmt.where(a.subject == subject)
    stmt = stmt.order_by(a.at.desc(), a.id.desc()).limit(limit)
    with db.translate_errors("reading the audit log"), db.engine.connect() as conn:
        return [_dict(r) for r in conn.execute(stmt).mappings()]
