"""Plans for callers: from a predicted fleet, or from the stored predictions of a model.

``plan_from_store`` is what ``GET /plan``, ``prognos plan`` (without ``--data``) and the
dashboard call; ``plan_fleet`` is the same from predictions in hand (``prognos plan --data``).
Both return the optimal plan beside the riskiest-first baseline under the same capacity and
costs, so every caller can show what the optimisation is worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import false, func, select

from prognos.errors import NotFoundError, PlanError
from prognos.planning.baseline import riskiest_first
from prognos.planning.distribution import FailureDistributions, failure_distributions
from prognos.planning.fleet import FleetRisk
from prognos.planning.plan import Costs, CostTable, Plan, check_capacity
from prognos.planning.schedule import optimal_plan
from prognos.storage.models import Prediction

if TYPE_CHECKING:
    from prognos.storage.database import Database

MAX_ASSETS = 100_000  # a plan reads at most this many assets' latest predictions


@dataclass(frozen=True)
class PlanComparison:
    """The optimal plan and the riskiest-first baseline over the same fleet, capacity and costs.

    ``distributions`` and ``table`` are what both were judged with (for realised-cost checks)."""

    plan: Plan
    baseline: Plan
    fleet: FleetRisk
    distributions: FailureDistributions
    table: CostTable

    @property
    def saving(self) -> float:
        """Expected cost the plan saves over riskiest-first (>= 0)."""
        return self.baseline.expected_cost - self.plan.expected_cost


def plan_fleet(
    fleet: FleetRisk,
    *,
    crews: int,
    days: int,
    costs: Costs | None = None,
    coverage: float = 0.9,
    time_per_day: float = 1.0,
    time_limit: float = 60.0,
) -> PlanComparison:
    """Schedule inspections of ``fleet`` over ``days`` days with ``crews`` inspections a day.

    ``costs``: the training configuration's defaults when None. ``coverage``: of the predicted
    intervals (the model's, 0.9 by default). ``time_per_day``: the fleet's time units (cycles)
    that pass in one day. Raises :class:`PlanError` on bad capacity or predictions.
    """
    check_capacity(crews, days)
    costs = costs or Costs.default()
    dists = failure_distributions(
        fleet.rul, fleet.lower, fleet.upper, coverage=coverage, time_per_day=time_per_day
    )
    table = CostTable.build(dists, days, costs)
    return PlanComparison(
        plan=optimal_plan(table, fleet.asset_ids, crews, time_limit=time_limit),
        baseline=riskiest_first(fleet, dists, table, crews),
        fleet=fleet,
        distributions=dists,
        table=table,
    )


def plan_from_store(
    db: Database,
    model_name: str,
    *,
    crews: int,
    days: int,
    costs: Costs | None = None,
    coverage: float = 0.9,
    time_per_day: float = 1.0,
    as_of: datetime | None = None,
) -> PlanComparison:
    """:func:`plan_fleet` over the latest stored (served, not shadow) prediction of each asset
    that ``model_name`` predicted.

    A prediction made before ``as_of`` (now by default) is aged first: its RUL and interval are
    moved down by the time elapsed since, ``time_per_day`` time units a day. Raises
    :class:`NotFoundError` when the model has no stored predictions, :class:`PlanError` on bad
    capacity or stored values, a storage error when the database cannot be read.
    """
    check_capacity(crews, days)
    rows = latest_predictions_of(db, model_name)
    if not rows:
        raise NotFoundError(f"no stored predictions of model {model_name!r} to plan from")
    now = as_of or datetime.now(UTC)
    elapsed_days = np.array([_age_days(now, row["created_at"]) for row in rows])
    fleet = FleetRisk.from_records(rows).aged(elapsed_days * time_per_day)
    return plan_fleet(
        fleet, crews=crews, days=days, costs=costs, coverage=coverage, time_per_day=time_per_day
    )


def latest_predictions_of(db: Database, model_name: str) -> list[dict[str, Any]]:
    """Each asset's latest served prediction by ``model_name`` (newest reading time, then newest
    creation), at most :data:`MAX_ASSETS` assets."""
    p = Prediction.__table__.c
    recency = (
        func.row_number()
        .over(partition_by=p.asset_id, order_by=(p.time.desc(), p.created_at.desc(), p.id.desc()))
        .label("recency")
    )
    ranked = (
        select(Prediction.__table__, recency)
        .where(p.model_name == model_name, p.shadow == false())
        .subquery()
    )
    stmt = (
        select(*(ranked.c[c.name] for c in Prediction.__table__.columns))
        .where(ranked.c.recency == 1)
        .order_by(ranked.c.asset_id)
        .limit(MAX_ASSETS)
    )
    with db.translate_errors("reading the latest predictions"), db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def _age_days(now: datetime, created: datetime) -> float:
    if created.tzinfo is None:  # stored as UTC; SQLite hands it back naive
        created = created.replace(tzinfo=UTC)
    if now.tzinfo is None:
        raise PlanError("as_of must carry a time zone")
    return max((now - created).total_seconds() / 86_400.0, 0.0)
