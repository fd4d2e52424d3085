"""An operator's move of the ``champion`` alias (promote a version, roll back), recorded in the
audit log: one implementation for ``prognos models promote|rollback`` and the dashboard's
buttons, so both leave the same trail (``champion_promote`` / ``champion_rollback``, from and to).
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient

from prognos.registry import versions
from prognos.storage import audit
from prognos.storage.database import Database


def promote(client: MlflowClient, db: Database, name: str, version: int, actor: str) -> int:
    """Make ``version`` the champion (no gate: an operator's explicit decision); audited."""
    previous = versions.champion(client, name)
    versions.promote(client, name, version)
    _audit(db, actor, "promote", name, previous, version)
    return version


def rollback(client: MlflowClient, db: Database, name: str, actor: str) -> int:
    """Move the champion back to the previous one; audited. Returns the version now champion."""
    previous = versions.champion(client, name)
    version = versions.rollback(client, name)
    _audit(db, actor, "rollback", name, previous, version)
    return version


def _audit(
    db: Database,
    actor: str,
    action: str,
    name: str,
    previous: versions.VersionInfo | None,
    version: int,
) -> dict[str, Any]:
    details = {"from": None if previous is None else previous.version, "to": version}
    return audit.record(db, actor, f"champion_{action}", name, details)
