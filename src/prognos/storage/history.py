"""Stored readings as the feature pipeline reads them: what rebuilds online state."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from prognos.storage.database import Database
from prognos.storage.models import Reading


def readings_frame(db: Database) -> pd.DataFrame:
    """Every stored reading, one row per (asset, time), channels as columns (asset then time).

    The whole history, because the EWMA features depend on all of it: seeding state from a
    truncated history would not equal replaying the readings.
    """
    stmt = select(Reading.asset_id, Reading.time, Reading.values).order_by(
        Reading.asset_id, Reading.time
    )
    with db.translate_errors("reading the stored history"), db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return pd.DataFrame(columns=["asset_id", "time"])
    values = pd.DataFrame.from_records([r.values for r in rows])
    values.insert(0, "time", [r.time for r in rows])
    values.insert(0, "asset_id", [r.asset_id for r in rows])
    return values
