"""Response body of ``GET /plan`` (its own module: the plan is not a prediction)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from prognos.planning import Plan, PlanComparison


class VisitOut(BaseModel):
    equipment_id: str
    day: int = Field(description="Day of the inspection, 1 = today.")
    failure_probability_before: float = Field(
        description="Probability it has failed before the crew comes (a missed failure)."
    )
    failure_probability_horizon: float = Field(
        description="Probability it fails within the planned days if never inspected."
    )
    expected_cost: float
    expected_saving: float = Field(description="Expected cost saved over not inspecting it.")


class PolicyOut(BaseModel):
    policy: str
    inspections: int
    expected_cost: float = Field(description="Visits' expected cost plus the unvisited assets'.")
    expected_cost_unvisited: float
    status: str = Field(description="The solver's status ('optimal'), or 'heuristic'.")
    seconds: float
    visits: list[VisitOut]

    @classmethod
    def of(cls, plan: Plan) -> PolicyOut:
        return cls(
            policy=plan.policy,
            inspections=len(plan.visits),
            expected_cost=plan.expected_cost,
            expected_cost_unvisited=plan.expected_cost_unvisited,
            status=plan.status,
            seconds=plan.seconds,
            visits=[
                VisitOut(
                    equipment_id=v.asset_id,
                    day=v.day,
                    failure_probability_before=v.failure_probability_before,
                    failure_probability_horizon=v.failure_probability_horizon,
                    expected_cost=v.expected_cost,
                    expected_saving=v.expected_saving,
                )
                for v in plan.visits
            ],
        )


class PlanOut(BaseModel):
    model_name: str
    crews: int
    days: int
    assets: int = Field(description="Assets planned over (each one's latest prediction).")
    cost_missed_failure: float
    cost_inspection: float
    expected_cost_idle: float = Field(description="Expected cost of inspecting nothing.")
    saving: float = Field(description="Expected cost the plan saves over riskiest-first.")
    plan: PolicyOut
    baseline: PolicyOut = Field(description="Inspect the alerted assets, riskiest first.")

    @classmethod
    def of(cls, model_name: str, comparison: PlanComparison) -> PlanOut:
        plan = comparison.plan
        return cls(
            model_name=model_name,
            crews=plan.crews,
            days=plan.days,
            assets=plan.n_assets,
            cost_missed_failure=plan.costs.missed_failure,
            cost_inspection=plan.costs.inspection,
            expected_cost_idle=plan.expected_cost_idle,
            saving=comparison.saving,
            plan=PolicyOut.of(plan),
            baseline=PolicyOut.of(comparison.baseline),
        )
