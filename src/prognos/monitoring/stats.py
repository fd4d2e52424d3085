"""The drift statistics and their thresholds, calibrated on the training fleet.

Two kinds of test per column, both compared against the reference *reweighted to the batch's own
mix of cells* (regime x health stage), so that an older (or younger) fleet expects more late-stage
(early-stage) readings and gets them; what remains is change within cells, which aging alone does
not produce:

- **histogram tests** (level of the residual; within-asset first differences): PSI between the
  batch histogram and the reweighted reference histogram;
- **shift test**: the batch's mean residual, in the cells' reference standard deviations.

Why effect sizes and not p-values: on 100,000 readings every test rejects for differences no
engineer would act on (Evidently's issues #50 and #763), so there are floors. And readings of one
asset are not independent (each asset has its own offsets): a batch of 30 assets carries about 30
samples of an asset-level shift, however many readings it has. So the null spread is *measured*
by **asset-grouped resampling of the training fleet**: batches of ``m`` held-out assets, each a
random stretch of its life, against the reference built from the other assets, for a grid of
``m``. Per test and ``m`` we keep the mean and spread of log PSI (the shift's spread), fit a
normal to them and put the threshold at the Bonferroni quantile ``1 - alpha / (2 tests)``; in
between grid points we interpolate in ``log m``, beyond the grid the null falls like ``1/m``
(PSI) or ``1/sqrt(m)`` (shift) at most. A multinomial bound covers batches with many assets but
few readings each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

SHRINK = 20.0  # pseudo-readings that pull a thin cell toward the test's pooled histogram
MIN_ROWS = 50  # fewer readings than this in a test: not scored
_PSEUDO = 0.5  # per-bin pseudo-count on both histograms (an empty bin in both adds nothing)


def reference_props(counts: NDArray[np.int64] | Array, n_stages: int = 1) -> Array:
    """Per-cell bin proportions (tests, cells, bins); a thin cell is shrunk toward its stage's
    histogram over all regimes (cells are ``regime * n_stages + stage``)."""
    counts = np.asarray(counts, dtype=np.float64)
    n_tests, n_cells, n_bins = counts.shape
    by_stage = counts.reshape(n_tests, n_cells // n_stages, n_stages, n_bins).sum(axis=1)
    stage_props = by_stage / np.maximum(by_stage.sum(axis=2, keepdims=True), 1.0)
    empty = by_stage.sum(axis=2, keepdims=True) == 0
    pooled = counts.sum(axis=1, keepdims=True) / np.maximum(
        counts.sum(axis=(1, 2))[:, None, None], 1
    )
    stage_props = np.where(empty, pooled, stage_props)
    prior = np.tile(stage_props, (1, n_cells // n_stages, 1))
    n_cell = counts.sum(axis=2, keepdims=True)
    return np.asarray((counts + SHRINK * prior) / (n_cell + SHRINK), dtype=np.float64)


def psi(observed: Array, expected: Array, n: Array) -> Array:
    """PSI per row of two (tests, bins) arrays of proportions, with a pseudo-count per bin."""
    denominator = (n + _PSEUDO * observed.shape[1])[:, None]
    p = (observed * n[:, None] + _PSEUDO) / denominator
    q = (expected * n[:, None] + _PSEUDO) / denominator
    return ((p - q) * np.log(p / q)).sum(axis=1)


@dataclass(frozen=True)
class Scores:
    score: Array  # (tests,), NaN where fewer than MIN_ROWS readings
    rows: Array  # (tests,)
    observed: Array  # (tests, bins) batch proportions
    expected: Array  # (tests, bins) reference proportions at the batch's cell mix


def score_batch(batch: NDArray[np.int64], props: Array) -> Scores:
    """Stratum-reweighted PSI of a batch histogram (tests, cells, bins) against ``props``."""
    counts = batch.astype(np.float64)
    n_cell = counts.sum(axis=2)
    n = n_cell.sum(axis=1)
    safe = np.maximum(n, 1.0)
    weights = n_cell / safe[:, None]
    expected = np.einsum("tc,tcb->tb", weights, props)
    observed = counts.sum(axis=1) / safe[:, None]
    score = psi(observed, expected, n)
    score[n < MIN_ROWS] = np.nan
    return Scores(score=score, rows=n, observed=observed, expected=expected)


@dataclass(frozen=True)
class Calibration:
    """Null spread of every test, measured on asset-grouped resamples of the training fleet."""

    assets: Array  # (grid,) batch sizes in assets
    log_mean: Array  # (histogram tests, grid) mean of log PSI
    log_sd: Array  # (histogram tests, grid)
    shift_sd: Array  # (columns, grid) spread of the mean residual
    change_slopes: Array  # (stages, columns) half-difference per unit of health-index change
    change_limits: Array  # (null groups, columns) null quantile of an asset's net difference
    n_tests: int  # histogram, shift and change tests: the Bonferroni denominator
    z: float  # standard normal quantile at 1 - alpha / (2 tests)
    floor: float  # PSI below this is never drift
    shift_floor: float  # nor a mean shift below this many standard deviations
    multinomial: float  # chi2 quantile (1 - alpha / tests, bins - 1)
    alpha: float
    resamples: int
    false_alarms: float  # share of calibration resamples with any test over its threshold

    def thresholds(self, n_assets: int, rows: Array) -> tuple[Array, Array]:
        """(histogram test thresholds, shift thresholds) for a batch of ``n_assets`` assets with
        ``rows`` readings per histogram test."""
        m = max(n_assets, 1)
        log_mean = _along(self.assets, self.log_mean, m, slope=(-1.0, 0.0), log=False)
        log_sd = _along(self.assets, self.log_sd, m, slope=(0.0, 0.0), log=False)
        psi_null = np.exp(log_mean + self.z * log_sd)
        sampled = self.multinomial / np.maximum(rows, 1.0)
        histogram = np.maximum.reduce([np.full_like(psi_null, self.floor), psi_null, sampled])
        shift_null = self.z * _along(self.assets, self.shift_sd, m, slope=(-0.5, 0.0), log=True)
        return histogram, np.maximum(shift_null, self.shift_floor)


def _along(grid: Array, values: Array, m: float, *, slope: tuple[float, float], log: bool) -> Array:
    """``values`` (tests, grid) at ``m``, linear in ``log m`` (and in ``log value`` when ``log``);
    past the grid's end, continued with the last segment's slope clipped to ``slope`` (per unit of
    ``log m``; for ``log=False`` values that are themselves logs)."""
    y = np.log(np.maximum(values, 1e-12)) if log else np.asarray(values, dtype=np.float64)
    x = np.log(grid)
    at = np.log(m)
    if len(grid) == 1 or at <= x[0]:
        out = y[:, 0]
    elif at >= x[-1]:
        last = np.clip((y[:, -1] - y[:, -2]) / (x[-1] - x[-2]), *slope)
        out = y[:, -1] + last * (at - x[-1])
    else:
        k = int(np.searchsorted(x, at)) - 1
        t = (at - x[k]) / (x[k + 1] - x[k])
        out = y[:, k] * (1 - t) + y[:, k + 1] * t
    return np.asarray(np.exp(out) if log else out, dtype=np.float64)


def mean_shift(residual: Array, usable: NDArray[np.bool_]) -> Array:
    """Mean residual per column over usable values (NaN where none)."""
    count = usable.sum(axis=0)
    total = np.where(usable, residual, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
