"""Each asset's failure-time distribution, read off its RUL point and conformal interval.

**Family: a piecewise-linear CDF through the quantiles the model states** (uniform density between
two adjacent stated quantiles). The conformal interval is distribution-free: it claims quantiles
(``P(T < lower) = alpha/2``, ``P(T > upper) = alpha/2``, ``alpha = 1 - coverage``), not a shape.
Interpolating the CDF between them adds no shape the model did not state, and it copes with what
a parametric family cannot: a lognormal fitted to the two ends breaks on ``lower = 0`` (clipped
there for assets near failure, exactly the ones a plan is about) and forces a right skew the
intervals do not always have (they are asymmetric both ways, per band).

Knots, in the fleet's time units from the prediction (``a = alpha/2``):

- closed interval: ``(0, 0)``, ``(lower, a)``, ``(rul, 0.5)``, ``(upper, 1 - a)``. The point
  estimate is taken as the median (an assumption: the blend is fitted to squared error); it is left
  out when it falls outside the interval. ``lower = 0`` puts an atom of ``a`` at 0: the interval
  says the asset may be failing now.
- open above (``upper`` missing or infinite: the model cannot see past its RUL cap): only the
  lower tail is known, ``P(T < lower) = alpha`` (the lower end is then one-sided at the full
  coverage). Knots ``(0, 0)``, ``(lower, alpha)`` and ``(rul, 0.5)`` when ``rul > lower``. The
  capped point estimate is at most the true median, so taking it as the median brings failures
  *earlier* than they are: the upper tail is modelled pessimistically, never invented to be safe.
- beyond the last knot the CDF goes on at the slope of the last segment until it reaches 1 (the
  tail is as thin as the density next to it). Only assets whose last stated quantile lies inside
  the plan's horizon feel this, and for them it holds at most ``a`` (closed) or 0.5 (open) mass.

Time is converted to days with ``time_per_day`` (fleet time units, e.g. cycles, per day).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from prognos.errors import PlanError

_KNOTS = 5  # at most: (0), lower, rul, upper, tail end


@dataclass(frozen=True)
class FailureDistributions:
    """Failure-time CDFs of a fleet, in days from now, one row of knots per asset.

    ``knots_t`` (days, ascending per row) and ``knots_p`` (CDF values, non-decreasing, last 1);
    rows are padded by repeating their last knot.
    """

    knots_t: NDArray[np.float64]
    knots_p: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.knots_t.shape[0])

    def cdf(self, days: ArrayLike) -> NDArray[np.float64]:
        """``P(T <= t)`` for every asset (rows) and each ``t`` in ``days`` (columns)."""
        t = np.atleast_1d(np.asarray(days, dtype=np.float64))
        out = np.empty((len(self), t.size))
        for i in range(len(self)):
            out[i] = np.interp(t, self.knots_t[i], self.knots_p[i], left=0.0, right=1.0)
        # An atom at 0 (first knot (0, p > 0)): P(T <= 0) is p, which interp gives at t = 0.
        return out

    def sample(self, rng: np.random.Generator, n: int = 1) -> NDArray[np.float64]:
        """``n`` draws of each asset's failure time (days), shape ``(assets, n)``: inverse CDF."""
        u = rng.random((len(self), n))
        out = np.empty_like(u)
        for i in range(len(self)):
            p, t = self.knots_p[i], self.knots_t[i]
            # Flat CDF stretches have no mass; interp over p needs p increasing, so keep the
            # first knot of each p value (the earliest time reaching it).
            keep = np.concatenate(([True], np.diff(p) > 0))
            out[i] = np.interp(u[i], p[keep], t[keep], left=t[0])
        return out


def failure_distributions(
    rul: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    *,
    coverage: float = 0.9,
    time_per_day: float = 1.0,
) -> FailureDistributions:
    """The distributions of the module docstring from predicted ``rul`` and its interval.

    ``upper`` NaN or ``inf`` marks an interval open above. Raises :class:`PlanError` naming the
    first bad asset (by position) for a missing or negative RUL or lower end, an upper end below
    the lower end, or a bad ``coverage`` / ``time_per_day``.
    """
    if not 0.0 < coverage < 1.0:
        raise PlanError(f"coverage must be in (0, 1), got {coverage}")
    if not (np.isfinite(time_per_day) and time_per_day > 0):
        raise PlanError(f"time_per_day must be a positive number, got {time_per_day}")
    r, lo, up = (np.asarray(v, dtype=np.float64).ravel() for v in (rul, lower, upper))
    if not r.size == lo.size == up.size:
        raise PlanError(f"rul, lower and upper differ in length ({r.size}, {lo.size}, {up.size})")
    _check(~np.isfinite(r) | (r < 0), "RUL is missing, infinite or negative")
    _check(~np.isfinite(lo) | (lo < 0), "interval lower end is missing, infinite or negative")
    is_open = ~np.isfinite(up)
    _check(~is_open & (up < lo), "interval upper end is below its lower end")

    a = (1.0 - coverage) / 2.0
    t = np.empty((r.size, _KNOTS))
    p = np.empty((r.size, _KNOTS))
    for i in range(r.size):
        if is_open[i]:
            pts = [(lo[i], 1.0 - coverage)] + ([(r[i], 0.5)] if r[i] > lo[i] else [])
        else:
            inside = lo[i] < r[i] < up[i]
            pts = [(lo[i], a), *([(r[i], 0.5)] if inside else []), (up[i], 1.0 - a)]
        row = _with_ends(pts)
        t[i, : len(row)], p[i, : len(row)] = zip(*row, strict=True)
        t[i, len(row) :], p[i, len(row) :] = row[-1]
    return FailureDistributions(knots_t=t / time_per_day, knots_p=p)


def _with_ends(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The stated quantiles with the origin before them and the extrapolated end after them."""
    row = [(0.0, 0.0)] if pts[0][0] > 0 else []
    for pt in pts:  # two quantiles at one time (lower = upper): an atom, the higher p stands
        if row and pt[0] <= row[-1][0]:
            row[-1] = (row[-1][0], pt[1])
        else:
            row.append(pt)
    if row[0][0] == 0.0 and len(row) == 1:  # everything at 0: failing now
        return [(0.0, 1.0)]
    (t0, p0), (t1, p1) = row[-2], row[-1]
    slope = (p1 - p0) / (t1 - t0)
    if slope <= 0:  # pragma: no cover - knots ascend in both t and p by construction
        raise PlanError("internal: a failure-time CDF does not increase")
    row.append((t1 + (1.0 - p1) / slope, 1.0))
    return row


def _check(bad: NDArray[np.bool_], what: str) -> None:
    if bad.any():
        first = int(np.argmax(bad))
        raise PlanError(
            f"cannot plan: {int(bad.sum())} asset(s) whose {what} (first at row {first})"
        )
