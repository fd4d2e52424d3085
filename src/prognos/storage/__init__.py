"""Persistence for the prediction service: readings, predictions, feedback, API keys, audit log.

SQLite under the home by default, PostgreSQL when ``PROGNOS_DATABASE_URL`` is set; the schema is
managed by Alembic migrations (:meth:`Database.upgrade`). The request path never waits on the
database: it hands records to a :class:`RecordWriter`, which spools them to disk during an outage.
"""

from __future__ import annotations

from prognos.storage.api_keys import (
    SCOPES,
    ApiKeyInfo,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from prognos.storage.database import Database, database_url, normalise_url
from prognos.storage.records import KINDS, RecordKind, new_id, normalise_record
from prognos.storage.repository import (
    audit_events,
    feedback_labels,
    get_prediction,
    insert_audit,
    insert_feedback,
    insert_predictions,
    insert_readings,
    insert_records,
    latest_predictions,
    predictions_for_asset,
    readings_for_asset,
)
from prognos.storage.writer import RecordWriter

__all__ = [
    "KINDS",
    "SCOPES",
    "ApiKeyInfo",
    "Database",
    "RecordKind",
    "RecordWriter",
    "audit_events",
    "create_api_key",
    "database_url",
    "feedback_labels",
    "get_prediction",
    "insert_audit",
    "insert_feedback",
    "insert_predictions",
    "insert_readings",
    "insert_records",
    "latest_predictions",
    "list_api_keys",
    "new_id",
    "normalise_record",
    "normalise_url",
    "predictions_for_asset",
    "readings_for_asset",
    "revoke_api_key",
    "verify_api_key",
]
