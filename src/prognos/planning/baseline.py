"""The policy a plan must beat: inspect the riskiest first, as capacity allows.

What an operator does with ``GET /assets`` today: take the assets prognos says to inspect (the
alert: calibrated ``P(fail within H)`` above the cost-optimal threshold), riskiest first, and
fill the crews' days in that order, ``crews`` a day from day 1. Risk is either the failure
probability (the ranking ``GET /assets`` shows) or the earliest median failure time.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from prognos.errors import PlanError
from prognos.planning.distribution import FailureDistributions
from prognos.planning.fleet import FleetRisk
from prognos.planning.plan import CostTable, Plan, check_capacity

RiskOrder = Literal["probability", "earliest"]


def riskiest_first(
    fleet: FleetRisk,
    dists: FailureDistributions,
    table: CostTable,
    crews: int,
    *,
    order: RiskOrder = "probability",
    alerted_only: bool = True,
) -> Plan:
    """Alerted assets (all of them with ``alerted_only`` False), riskiest first, ``crews`` a day.

    ``order``: ``"probability"`` ranks by failure probability (highest first), ``"earliest"`` by
    median failure time (soonest first); ties keep the input order.
    """
    check_capacity(crews, table.days)
    start = time.perf_counter()
    if order == "probability":
        key = -fleet.failure_probability
    elif order == "earliest":
        key = _median_days(dists)
    else:
        raise PlanError(f"unknown risk order {order!r}: expected 'probability' or 'earliest'")
    eligible = np.flatnonzero(fleet.alert) if alerted_only else np.arange(len(fleet))
    ranked = eligible[np.argsort(key[eligible], kind="stable")][: crews * table.days]
    day = np.zeros(len(fleet), dtype=np.int64)
    day[ranked] = np.arange(ranked.size) // crews + 1
    return Plan.from_days(
        f"riskiest-first ({order})", day, table, fleet.asset_ids, crews=crews, status="heuristic",
        seconds=time.perf_counter() - start,
    )  # fmt: skip


def _median_days(dists: FailureDistributions) -> np.ndarray:
    """Each asset's median failure time (days), from its CDF knots."""
    out = np.empty(len(dists))
    for i in range(len(dists)):
        p, t = dists.knots_p[i], dists.knots_t[i]
        keep = np.concatenate(([True], np.diff(p) > 0))
        out[i] = np.interp(0.5, p[keep], t[keep], left=t[0])
    return out
