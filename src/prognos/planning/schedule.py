"""The expected-cost-minimising schedule: a MILP solved by HiGHS (``scipy.optimize.milp``).

Binary ``x[a, d]`` = inspect asset ``a`` on day ``d``; maximise ``sum gain[a, d] * x[a, d]``
(:meth:`CostTable.gain`, the expected saving over leaving it) subject to ``sum_d x[a, d] <= 1``
and ``sum_a x[a, d] <= crews``. Minimising expected cost is the same problem: the cost of doing
nothing is a constant.

Two exact reductions keep it small whatever the fleet: a pair with ``gain <= 0`` never helps, so
it gets no variable; and on day ``d`` only the ``crews * days`` assets with the highest gain that
day can be in an optimal plan (were a lower one scheduled that day, one of those higher ones would
be unscheduled, at most ``crews * days`` inspections in all, and swapping them gains). So a fleet
of 10,000 assets on 30 days with 5 crews has at most 4,500 variables.

The constraints are those of a transportation problem (each column of the matrix has one 1 in an
asset row and one in a day row), which is totally unimodular: the LP relaxation is already
integral, and HiGHS proves the optimum at the root. OR-Tools' CP-SAT would add a dependency for
no gain on this structure.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from prognos.errors import PlanError
from prognos.planning.plan import CostTable, Plan, check_capacity

# HiGHS's status codes, as scipy reports them.
_STATUS = {
    0: "optimal",
    1: "time_limit",
    2: "infeasible",
    3: "unbounded",
    4: "error",
}


def candidates(gain: NDArray[np.float64], crews: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``(assets, days)`` of the pairs that may be in an optimal plan (module docstring)."""
    n, days = gain.shape
    keep = gain > 0
    slots = crews * days
    if n > slots:
        # Per day, the ``slots``-th highest gain; anything strictly below it is dominated.
        kth = -np.partition(-gain, slots - 1, axis=0)[slots - 1]
        keep &= gain >= kth[None, :]
    assets, day_index = np.nonzero(keep)
    return assets, day_index


def optimal_plan(
    table: CostTable,
    asset_ids: tuple[str, ...],
    crews: int,
    *,
    time_limit: float = 60.0,
) -> Plan:
    """The minimum-expected-cost schedule for ``crews`` inspections a day over ``table.days``.

    Raises :class:`PlanError` for ``crews < 1`` or when HiGHS returns no solution within
    ``time_limit`` seconds; a feasible but unproven one (time limit) comes back with status
    ``time_limit``.
    """
    check_capacity(crews, table.days)
    if len(asset_ids) != table.before.shape[0]:
        raise PlanError(f"{len(asset_ids)} asset ids for {table.before.shape[0]} cost rows")
    start = time.perf_counter()
    gain = table.gain()
    assets, day_index = candidates(gain, crews)
    day = np.zeros(len(asset_ids), dtype=np.int64)
    if assets.size == 0:
        return Plan.from_days(
            "optimal", day, table, asset_ids, crews=crews, status="optimal",
            seconds=time.perf_counter() - start,
        )  # fmt: skip
    used, asset_row = np.unique(assets, return_inverse=True)
    m = assets.size
    columns = np.arange(m)
    # Rows: one per candidate asset (at most one visit), then one per day (at most crews).
    matrix = csr_array(
        (
            np.ones(2 * m),
            (
                np.concatenate([asset_row, used.size + day_index]),
                np.concatenate([columns, columns]),
            ),
        ),
        shape=(used.size + table.days, m),
    )
    upper = np.concatenate([np.ones(used.size), np.full(table.days, float(crews))])
    result = milp(
        c=-gain[assets, day_index],
        constraints=LinearConstraint(matrix, -np.inf, upper),
        integrality=np.ones(m),
        bounds=Bounds(0.0, 1.0),
        options={"time_limit": float(time_limit), "presolve": True},
    )
    status = _STATUS.get(int(result.status), f"status {result.status}")
    if result.x is None:
        raise PlanError(f"the solver found no schedule ({status}): {result.message}")
    chosen = np.round(result.x).astype(bool)
    day[assets[chosen]] = day_index[chosen] + 1
    return Plan.from_days(
        "optimal", day, table, asset_ids, crews=crews, status=status,
        seconds=time.perf_counter() - start,
    )  # fmt: skip
