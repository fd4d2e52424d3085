"""Maintenance planning: which asset to inspect on which day, given crews a day, to minimise the
expected cost of missed failures and inspections (a MILP over each asset's failure-time
distribution, judged against inspecting the riskiest first)."""

from prognos.planning.plan import Costs, Plan, Visit
from prognos.planning.service import PlanComparison, plan_fleet, plan_from_store

__all__ = ["Costs", "Plan", "PlanComparison", "Visit", "plan_fleet", "plan_from_store"]
