"""The operator dashboard's reads that no other part needs: the fleet page (each asset's latest
prediction filtered, ranked and paged in SQL, with when its last reading arrived), the fleet's
risk distribution, an asset's feedback, and a monitoring figure across runs.

Each is one or two statements whose cost follows the page (or the fleet's size), not the history
of readings: the dashboard stays fast on a fleet of 1,000 assets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, case, func, select

from prognos.storage.database import Database
from prognos.storage.models import Feedback, MonitoringMetric, MonitoringRun, Reading
from prognos.storage.repository import latest_served

__all__ = [
    "FleetFilter",
    "FleetPage",
    "asset_feedback",
    "fleet_page",
    "metric_history",
    "risk_distribution",
]

_READINGS: Table = Reading.__table__  # type: ignore[assignment]
_FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]
_RUNS: Table = MonitoringRun.__table__  # type: ignore[assignment]
_METRICS: Table = MonitoringMetric.__table__  # type: ignore[assignment]

RISK_LEVELS = ("HIGH", "MEDIUM", "LOW")
BINS = 10  # the risk distribution's bins over [0, 1]


@dataclass(frozen=True)
class FleetFilter:
    """What the operator narrowed the fleet to: an asset id containing ``search``, one risk
    level, only assets to inspect."""

    search: str = ""
    risk: str | None = None
    inspect_only: bool = False


@dataclass
class FleetPage:
    rows: list[dict[str, Any]]
    total: int  # assets matching the filter, on every page
    offset: int
    limit: int
    last_received: dict[tuple[str, str], datetime] = field(default_factory=dict)


def _filtered(latest: Any, flt: FleetFilter) -> list[Any]:
    where = []
    if flt.search:
        where.append(latest.c.asset_id.contains(flt.search, autoescape=True))
    if flt.risk in RISK_LEVELS:
        where.append(latest.c.risk_level == flt.risk)
    if flt.inspect_only:
        where.append(latest.c.should_inspect.is_(True))
    return where


def fleet_page(db: Database, flt: FleetFilter, offset: int = 0, limit: int = 50) -> FleetPage:
    """One page of the fleet's latest predictions matching ``flt``, riskiest first, the count of
    all that match, and each shown asset's newest reading's arrival time."""
    if limit < 1 or offset < 0:
        raise ValueError(f"bad page: offset {offset}, limit {limit}")
    latest = latest_served()
    where = _filtered(latest, flt)
    page = (
        select(latest)
        .where(*where)
        .order_by(latest.c.failure_probability.desc(), latest.c.asset_id)
        .offset(offset)
        .limit(limit)
    )
    count = select(func.count()).select_from(latest).where(*where)
    with db.translate_errors("reading the fleet"), db.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(page).mappings()]
        total = int(conn.execute(count).scalar_one())
        received = _last_received(conn, [(r["fleet"], r["asset_id"]) for r in rows])
    return FleetPage(rows, total, offset, limit, received)


def _last_received(conn: Any, assets: list[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """When each asset's newest reading (by time) arrived: one probe of the (fleet, asset, time)
    key per asset."""
    if not assets:
        return {}
    r = _READINGS.c
    newest = _READINGS.alias("newest")
    top = (
        select(func.max(newest.c.time))
        .where(newest.c.fleet == r.fleet, newest.c.asset_id == r.asset_id)
        .scalar_subquery()
    )
    wanted = set(assets)
    stmt = select(r.fleet, r.asset_id, r.received_at).where(
        r.fleet.in_({f for f, _ in wanted}), r.asset_id.in_({a for _, a in wanted}), r.time == top
    )
    return {(f, a): at for f, a, at in conn.execute(stmt) if (f, a) in wanted}


def risk_distribution(db: Database) -> dict[str, Any]:
    """The fleet's latest failure probabilities in :data:`BINS` bins over [0, 1], the count per
    risk level and of assets to inspect: one aggregate over each asset's latest prediction."""
    latest = latest_served()
    p = latest.c.failure_probability
    bin_ = case((p >= 1.0, BINS - 1), else_=func.floor(p * BINS)).label("bin")
    by_bin = select(bin_, func.count()).select_from(latest).group_by(bin_)
    by_level = (
        select(
            latest.c.risk_level,
            func.count(),
            func.sum(case((latest.c.should_inspect.is_(True), 1), else_=0)),
        )
        .select_from(latest)
        .group_by(latest.c.risk_level)
    )
    with db.translate_errors("reading the risk distribution"), db.engine.connect() as conn:
        bins = [0] * BINS
        for b, n in conn.execute(by_bin):
            bins[min(max(int(b), 0), BINS - 1)] += int(n)
        levels = {
            str(level): (int(n), int(inspect or 0)) for level, n, inspect in conn.execute(by_level)
        }
    return {
        "bins": bins,
        "levels": {lvl: levels.get(lvl, (0, 0))[0] for lvl in RISK_LEVELS},
        "inspect": sum(i for _, i in levels.values()),
        "assets": sum(n for n, _ in levels.values()),
    }


def asset_feedback(db: Database, asset_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """An asset's feedback, newest first, with the notes and who sent it."""
    f = _FEEDBACK.c
    stmt = (
        select(_FEEDBACK)
        .where(f.asset_id == asset_id)
        .order_by(f.created_at.desc(), f.id.desc())
        .limit(limit)
    )
    with db.translate_errors("reading feedback"), db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def metric_history(
    db: Database,
    name: str,
    *,
    kind: str = "live",
    model_name: str | None = None,
    runs: int = 30,
) -> list[dict[str, Any]]:
    """One figure (``name``, every label) over the newest ``runs`` runs of ``kind``, oldest
    first: ``at`` (the end of the run's window, else its start), ``run_id``, ``model_version``,
    ``label``, ``value``."""
    r, m = _RUNS.c, _METRICS.c
    newest = select(r.id).where(r.kind == kind)
    if model_name is not None:
        newest = newest.where(r.model_name == model_name)
    recent = newest.order_by(r.started_at.desc(), r.id.desc()).limit(runs).subquery()
    stmt = (
        select(
            func.coalesce(r.window_end, r.started_at).label("at"),
            r.id.label("run_id"),
            r.model_version,
            m.label,
            m.value,
        )
        .select_from(_RUNS.join(_METRICS, and_(m.run_id == r.id, m.name == name)))
        .where(r.id.in_(select(recent.c.id)))
        .order_by(func.coalesce(r.window_end, r.started_at), r.id, m.label)
    )
    with db.translate_errors("reading monitoring history"), db.engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]
