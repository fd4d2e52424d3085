"""Stored readings as the feature pipeline reads them: what rebuilds online state."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from prognos.storage.database import Database
from prognos.storage.models import Reading


def readings_frame(db: Database, last: int | None = None) -> pd.DataFrame:
    """Stored readings, one row per (asset, time), channels as columns (asset then time).

    ``last`` keeps only each asset's newest ``last`` readings (a window function in the
    database), so that rebuilding state costs the fleet's size, not its history's.
    """
    if last is None:
        stmt = select(Reading.asset_id, Reading.time, Reading.values)
    else:
        newest_first = Reading.time.desc()
        rank = func.row_number().over(partition_by=Reading.asset_id, order_by=newest_first)
        ranked = select(Reading.asset_id, Reading.time, Reading.values, rank.label("rank"))
        tail = ranked.subquery()
        stmt = select(tail.c.asset_id, tail.c.time, tail.c["values"]).where(tail.c.rank <= last)
    stmt = stmt.order_by("asset_id", "time")
    with db.translate_errors("reading the stored history"), db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return pd.DataFrame(columns=["asset_id", "time"])
    values = pd.DataFrame.from_records([r[2] for r in rows])
    values.insert(0, "time", [r[1] for r in rows])
    values.insert(0, "asset_id", [r[0] for r in rows])
    return values


def reading_counts(db: Database) -> dict[str, int]:
    """How many readings each asset has stored."""
    stmt = select(Reading.asset_id, func.count()).group_by(Reading.asset_id)
    with db.translate_errors("counting the stored history"), db.engine.connect() as conn:
        return {asset: int(n) for asset, n in conn.execute(stmt).all()}
