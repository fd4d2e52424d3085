"""What the retraining loop asks the database: when a model last changed, how much feedback
arrived since."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select

from prognos.storage.database import Database
from prognos.storage.models import AuditEvent, Feedback

_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
_FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]


def last_event(db: Database, subject: str, actions: tuple[str, ...]) -> dict[str, Any] | None:
    """The newest audit event about ``subject`` with one of ``actions``, or None."""
    a = _AUDIT.c
    stmt = (
        select(_AUDIT)
        .where(a.subject == subject, a.action.in_(actions))
        .order_by(a.at.desc(), a.id.desc())
        .limit(1)
    )
    with db.translate_errors("reading the audit log"), db.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return None if row is None else dict(row)


def feedback_since(db: Database, fleet: str, since: datetime | None) -> int:
    """Feedback rows of the fleet recorded after ``since`` (all of them without one)."""
    f = _FEEDBACK.c
    stmt = select(func.count()).select_from(_FEEDBACK).where(f.fleet == fleet)
    if since is not None:
        stmt = stmt.where(f.created_at > since)
    with db.translate_errors("counting feedback"), db.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
