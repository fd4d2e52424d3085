"""Alerting's reads and writes: the signals it computes from the stored records, and the alert
states (table ``alerts``).

Every signal query reads a bounded stretch through an index, so an evaluation every minute stays
cheap however long the history grows. Shadow predictions (a challenger's) are never counted:
they were not served. State changes happen in :func:`alert_transaction`, which serialises
evaluators (several workers, a CLI check beside the service) so an alert fires once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Table, false, func, select, text
from sqlalchemy.engine import Connection

from prognos.errors import NotFoundError
from prognos.storage import audit
from prognos.storage.database import Database
from prognos.storage.models import Alert, AuditEvent, Prediction, Reading

__all__ = [
    "ACKNOWLEDGED",
    "ACTIVE_STATES",
    "RETRAIN_FAILED",
    "RETRAIN_SUCCEEDED",
    "acknowledge_alert",
    "acknowledgements",
    "active_alerts",
    "alert_transaction",
    "insert_alert",
    "latest_asset_predictions",
    "list_alerts",
    "new_alert_id",
    "newest_prediction_at",
    "newest_received_at",
    "prediction_latencies",
    "retrain_outcomes",
    "update_alert",
]

_ALERTS: Table = Alert.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
_PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]
_READINGS: Table = Reading.__table__  # type: ignore[assignment]

ACTIVE_STATES = ("pending", "firing")
# The audit action of an operator acknowledging an alert (the subject is the alert's id).
ACKNOWLEDGED = "alert.acknowledged"
# Audit actions the retraining flow writes, with the model's name as the subject.
RETRAIN_FAILED = "retrain.failed"
RETRAIN_SUCCEEDED = "retrain.succeeded"
# Serialises alert evaluations on PostgreSQL (any fixed number, not the migrations' one).
_ALERT_LOCK_KEY = 0x70726F676E6F7341  # "prognosA"
# The newest readings (by insertion) searched for the newest arrival time.
_RECENT_READINGS = 1000


def new_alert_id() -> str:
    return f"alr_{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------ signals


def newest_prediction_at(db: Database, fleet: str | None = None) -> datetime | None:
    """When the newest served (non-shadow) prediction was made; None when there is none."""
    p = _PREDICTIONS.c
    stmt = select(p.created_at).where(p.shadow == false())
    if fleet is not None:
        stmt = stmt.where(p.fleet == fleet)
    # ORDER BY ... LIMIT 1 (not MAX) so SQLite too walks the created_at index from its end.
    stmt = stmt.order_by(p.created_at.desc()).limit(1)
    with db.translate_errors("reading the newest prediction"), db.engine.connect() as conn:
        value = conn.execute(stmt).scalar()
    return value if isinstance(value, datetime) else None


def prediction_latencies(
    db: Database, start: datetime, end: datetime, fleet: str | None = None
) -> list[float]:
    """Server latencies (ms) of the served predictions made in ``[start, end]``."""
    p = _PREDICTIONS.c
    stmt = select(p.latency_ms).where(
        p.created_at >= start,
        p.created_at <= end,
        p.shadow == false(),
        p.latency_ms.is_not(None),
    )
    if fleet is not None:
        stmt = stmt.where(p.fleet == fleet)
    with db.translate_errors("reading prediction latencies"), db.engine.connect() as conn:
        return [float(v) for v in conn.execute(stmt).scalars()]


def newest_received_at(db: Database, fleet: str | None = None) -> datetime | None:
    """The newest arrival among the most recently stored readings; None without readings.

    ``received_at`` has no index, so this looks at the last :data:`_RECENT_READINGS` rows by
    primary key (insertion order) rather than scanning the table: a spool replayed after an
    outage inserts older arrivals late, and the maximum over the last rows still finds the
    newest one.
    """
    r = _READINGS.c
    recent = select(r.received_at)
    if fleet is not None:
        recent = recent.where(r.fleet == fleet)
    recent_sub = recent.order_by(r.id.desc()).limit(_RECENT_READINGS).subquery()
    stmt = select(recent_sub.c.received_at)
    with db.translate_errors("reading the newest reading"), db.engine.connect() as conn:
        values = [v for v in conn.execute(stmt).scalars() if isinstance(v, datetime)]
    return max(values, default=None)


def retrain_outcomes(db: Database) -> list[dict[str, Any]]:
    """Every ``retrain.failed`` / ``retrain.succeeded`` audit event, oldest first: ``subject``
    (the model's name), ``action``, ``at``, ``details``."""
    a = _AUDIT.c
    stmt = (
        select(a.subject, a.action, a.at, a.details)
        .where(a.action.in_((RETRAIN_FAILED, RETRAIN_SUCCEEDED)))
        .order_by(a.at, a.id)
    )
    with db.translate_errors("reading retraining outcomes"), db.engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def latest_asset_predictions(
    db: Database, since: datetime, fleet: str | None = None
) -> list[dict[str, Any]]:
    """Each asset's latest served prediction among those made since ``since`` (newest reading
    time, then newest creation, as ``GET /assets``): ``fleet``, ``asset_id``, ``time``,
    ``created_at``, ``model_name``, ``model_version``, ``failure_probability``,
    ``should_inspect``, ``rul``, ``rul_lower``."""
    p = _PREDICTIONS.c
    columns = (
        p.fleet,
        p.asset_id,
        p.time,
        p.created_at,
        p.model_name,
        p.model_version,
        p.failure_probability,
        p.should_inspect,
        p.rul,
        p.rul_lower,
    )
    rank = (
        func.row_number()
        .over(
            partition_by=(p.fleet, p.asset_id),
            order_by=(p.time.desc(), p.created_at.desc(), p.id.desc()),
        )
        .label("recency")
    )
    ranked = select(*columns, rank).where(p.created_at >= since, p.shadow == false())
    if fleet is not None:
        ranked = ranked.where(p.fleet == fleet)
    sub = ranked.subquery()
    stmt = (
        select(*(sub.c[c.name] for c in columns))
        .where(sub.c.recency == 1)
        .order_by(sub.c.fleet, sub.c.asset_id)
    )
    with db.translate_errors("reading the assets' latest predictions"), db.engine.connect() as c:
        return [dict(row) for row in c.execute(stmt).mappings()]


# -------------------------------------------------------------------------------------- state


@contextmanager
def alert_transaction(db: Database) -> Iterator[Connection]:
    """One transaction for an evaluation's reads and writes of alert states, taken exclusively
    (SQLite's write lock, a PostgreSQL advisory lock): a second evaluator waits, then sees the
    first one's alerts as fired and does not notify them again."""
    with db.begin("evaluating alerts", immediate=True) as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ALERT_LOCK_KEY})
        yield conn


def active_alerts(conn: Connection) -> list[dict[str, Any]]:
    """The pending and firing alerts, oldest first."""
    a = _ALERTS.c
    stmt = select(_ALERTS).where(a.state.in_(ACTIVE_STATES)).order_by(a.started_at, a.id)
    return [dict(row) for row in conn.execute(stmt).mappings()]


def insert_alert(conn: Connection, row: Mapping[str, Any]) -> str:
    """Insert an alert (``id`` made when absent); returns its id."""
    values = dict(row)
    values.setdefault("id", new_alert_id())
    conn.execute(_ALERTS.insert(), [values])
    return str(values["id"])


def update_alert(conn: Connection, alert_id: str, changes: Mapping[str, Any]) -> None:
    if changes:
        conn.execute(_ALERTS.update().where(_ALERTS.c.id == alert_id).values(**changes))


def list_alerts(
    db: Database, *, include_resolved: bool = False, limit: int = 100, subject: str | None = None
) -> list[dict[str, Any]]:
    """Alerts, newest first: the pending and firing ones, or with ``include_resolved`` every
    one (at most ``limit``); ``subject``: only those about it (an asset)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    a = _ALERTS.c
    stmt = select(_ALERTS)
    if not include_resolved:
        stmt = stmt.where(a.state.in_(ACTIVE_STATES))
    if subject is not None:
        stmt = stmt.where(a.subject == subject)
    stmt = stmt.order_by(a.started_at.desc(), a.id.desc()).limit(limit)
    with db.translate_errors("listing alerts"), db.engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


# ------------------------------------------------------------------------------ acknowledgement


def acknowledge_alert(db: Database, alert_id: str, actor: str) -> dict[str, Any]:
    """Record that ``actor`` has seen the alert and is on it: an ``alert.acknowledged`` audit
    event about the alert (the audit log is the one record of who did what; the alert's own
    state still follows its rule). Returns the event; an unknown alert raises NotFoundError."""
    with db.translate_errors("reading an alert"), db.engine.connect() as conn:
        row = conn.execute(select(_ALERTS).where(_ALERTS.c.id == alert_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no alert {alert_id!r}")
    details = {"rule": row["rule"], "subject": row["subject"], "state": row["state"]}
    return audit.record(db, actor, ACKNOWLEDGED, alert_id, details)


def acknowledgements(db: Database, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The first acknowledgement (``actor``, ``at``) of each of ``alert_ids`` that has one."""
    if not alert_ids:
        return {}
    a = _AUDIT.c
    stmt = (
        select(a.subject, a.actor, a.at)
        .where(a.action == ACKNOWLEDGED, a.subject.in_(alert_ids))
        .order_by(a.at.desc(), a.id.desc())
    )
    with db.translate_errors("reading acknowledgements"), db.engine.connect() as conn:
        return {s: {"actor": actor, "at": at} for s, actor, at in conn.execute(stmt)}
