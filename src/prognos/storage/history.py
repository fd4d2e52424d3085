"""Stored readings as the feature pipeline reads them: what rebuilds online state."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import func, select

from prognos.storage.database import Database
from prognos.storage.models import DEFAULT_FLEET, Reading


def readings_tail(
    db: Database, last: int, fleet: str = DEFAULT_FLEET
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Each of ``fleet``'s assets' newest ``last`` readings, one row per (asset, time), channels
    as columns (asset then time), and each asset's reading count.

    One statement with window functions, so the rows and the counts are one snapshot even while
    readings are being written, and rebuilding state costs the fleet's size, not its history's.
    """
    newest_first = Reading.time.desc()
    ranked = (
        select(
            Reading.asset_id,
            Reading.time,
            Reading.values,
            func.row_number()
            .over(partition_by=Reading.asset_id, order_by=newest_first)
            .label("rank"),
            func.count().over(partition_by=Reading.asset_id).label("total"),
        )
        .where(Reading.fleet == fleet)
        .subquery()
    )
    stmt = (
        select(ranked.c.asset_id, ranked.c.time, ranked.c["values"], ranked.c.total)
        .where(ranked.c.rank <= last)
        .order_by(ranked.c.asset_id, ranked.c.time)
    )
    rows = _rows(db, stmt)
    return _frame(rows), {r[0]: int(r[3]) for r in rows}


def _rows(db: Database, stmt: Any) -> list[Any]:
    with db.translate_errors("reading the stored history"), db.engine.connect() as conn:
        return list(conn.execute(stmt).all())


def _frame(rows: list[Any]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=["asset_id", "time"])
    values = pd.DataFrame.from_records([r[2] for r in rows])
    values.insert(0, "time", [r[1] for r in rows])
    values.insert(0, "asset_id", [r[0] for r in rows])
    return values
