"""Writing one audit event now, from a command or a flow (the services queue theirs through the
writer instead, so a database outage never blocks a request)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prognos.storage.database import Database
from prognos.storage.records import normalise_record
from prognos.storage.repository import insert_audit


def record(
    db: Database, actor: str, action: str, subject: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Insert the event and return it as stored (its ``event_id`` and ``at``)."""
    row = normalise_record(
        "audit",
        {
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details or {},
            "at": datetime.now(UTC),
        },
    )
    insert_audit(db, [row])
    return row
