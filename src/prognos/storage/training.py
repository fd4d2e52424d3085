"""What retraining reads from the database: a fleet's whole stored history and its feedback.

Unlike the monitoring window, these read everything the fleet has (labels come late, and a life
can span months), so the readings are streamed in chunks of rows and turned into a frame chunk by
chunk instead of being held as Python rows all at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Table, func, select

from prognos.storage.database import Database
from prognos.storage.models import Feedback, Prediction, Reading

__all__ = ["FEEDBACK_EVENT_COLUMNS", "fleet_feedback", "fleet_readings", "newest_reading_time"]

_READINGS: Table = Reading.__table__  # type: ignore[assignment]
_FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]
_PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]

FEEDBACK_EVENT_COLUMNS = [
    "id",
    "asset_id",
    "event",
    "failure_occurred",
    "failure_time",
    "failure_cycle",
    "prediction_time",
    "created_at",
]


def fleet_readings(db: Database, fleet: str, *, chunk_rows: int = 20_000) -> pd.DataFrame:
    """Every stored reading of ``fleet``: ``asset_id`` (str), ``time`` (int64: cycles, or
    nanoseconds since the epoch for timestamped fleets), then one float64 column per channel
    the readings carry (NaN where a reading lacks it), sorted by asset then time.

    Read ``chunk_rows`` at a time (a server-side cursor on PostgreSQL), each chunk becoming a
    frame at once: memory stays near the frame's own size for ~10^5 rows and more.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    r = _READINGS.c
    stmt = (
        select(r.asset_id, r.time, r["values"]).where(r.fleet == fleet).order_by(r.asset_id, r.time)
    )
    frames: list[pd.DataFrame] = []
    with db.translate_errors("reading the fleet's stored readings"), db.engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk_rows).execute(stmt)
        for rows in result.partitions():
            values = pd.DataFrame.from_records([row[2] for row in rows]).astype("float64")
            values.insert(0, "time", np.array([row[1] for row in rows], dtype=np.int64))
            values.insert(0, "asset_id", np.array([str(row[0]) for row in rows], dtype=object))
            frames.append(values)
    if not frames:
        return pd.DataFrame({"asset_id": pd.Series(dtype=object), "time": pd.Series(dtype="int64")})
    frame = pd.concat(frames, ignore_index=True)  # channels a chunk lacks become NaN
    channels = [c for c in frame.columns if c not in ("asset_id", "time")]
    frame[channels] = frame[channels].astype("float64")
    return frame


def fleet_feedback(db: Database, fleet: str) -> pd.DataFrame:
    """Every feedback row of ``fleet`` (:data:`FEEDBACK_EVENT_COLUMNS`), oldest first, with the
    time of the prediction it names (``prediction_time``: null without one)."""
    f, p = _FEEDBACK.c, _PREDICTIONS.c
    stmt = (
        select(
            f.id,
            f.asset_id,
            f.event,
            f.failure_occurred,
            f.failure_time,
            f.failure_cycle,
            p.time.label("prediction_time"),
            f.created_at,
        )
        .select_from(_FEEDBACK.outerjoin(_PREDICTIONS, p.id == f.prediction_id))
        .where(f.fleet == fleet)
        .order_by(f.created_at, f.id)
    )
    with db.translate_errors("reading the fleet's feedback"), db.engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(stmt)]
    frame = pd.DataFrame.from_records(rows, columns=FEEDBACK_EVENT_COLUMNS)
    frame["asset_id"] = frame["asset_id"].astype(object)
    frame["event"] = frame["event"].astype(object)
    frame["failure_occurred"] = frame["failure_occurred"].astype(bool)
    frame["failure_time"] = pd.to_datetime(frame["failure_time"], utc=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    for column in ("failure_cycle", "prediction_time"):
        frame[column] = frame[column].astype("Int64")
    return frame


def newest_reading_time(db: Database, fleet: str) -> int | None:
    """The fleet's newest stored reading time (None without readings): says whether the fleet
    counts cycles or timestamps."""
    r = _READINGS.c
    stmt = select(func.max(r.time)).where(r.fleet == fleet)
    with db.translate_errors("reading the fleet's newest reading"), db.engine.connect() as conn:
        value = conn.execute(stmt).scalar_one_or_none()
    return None if value is None else int(value)
