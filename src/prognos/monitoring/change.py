"""The change test: assets whose residual level moved between the halves of their own readings.

Fleet-level tests compare a batch's distribution with the reference; their power is bounded by
how much assets differ from each other (in the simulator each asset's own sensor offsets are six
times its noise: a 30-asset fleet's mean is off by 0.2-0.35 standard deviations by chance alone).
An asset is its own best reference for a change that starts inside the batch: the difference of
its mean residual between the second and the first half of its readings cancels its offsets and
leaves noise, what the expected path (cell and age trend) does not explain, and the change.

What the expected path misses is mostly speed: an asset degrading faster than the cell means
follow moves all its degrading channels with its health index. So the difference is taken net of
its regression on the asset's own health-index change *without the channel itself* (a fault on a
channel must not explain itself away); the health index gets no change test (its sensors do).

Per column, an asset *changed* when that net difference exceeds the 99th percentile of the same
on stretches of training lives of similar length ending in the same health stage (the null,
measured at training). The column's score is the share of assets that changed; under the null
the count is binomial with p = 1%, and the threshold is its Bonferroni quantile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prognos.monitoring.strata import Layout, Rows

Array = NDArray[np.float64]

MIN_HALF = 10  # usable readings needed in each half of an asset's readings
NULL_RATE = 0.01  # per-asset exceedance rate of the null quantile
LENGTH_EDGES = (40.0, 80.0, 160.0)  # readings per asset: the null depends on the stretch length
_ENOUGH = 200  # null stretches needed to estimate a group's 99th percentile


def half_differences(
    asset: NDArray[np.intp],
    position: NDArray[np.intp],
    stage: NDArray[np.intp],
    residual: Array,
    usable: NDArray[np.bool_],
) -> tuple[Array, NDArray[np.intp]]:
    """Per asset (codes ``0..A-1``) and column: mean residual of its second half of readings minus
    its first half (NaN when a half has fewer than :data:`MIN_HALF` usable values), and the
    asset's null group (:func:`groups`). Rows are sorted by asset, then time."""
    n_assets = int(asset.max()) + 1 if len(asset) else 0
    length = np.bincount(asset, minlength=n_assets).astype(np.float64)
    second = position >= length[asset] / 2.0
    group = asset * 2 + second
    n_groups = 2 * n_assets
    out = np.full((n_assets, residual.shape[1]), np.nan)
    for j in range(residual.shape[1]):
        ok = usable[:, j]
        total = np.bincount(group[ok], weights=residual[ok, j], minlength=n_groups)
        count = np.bincount(group[ok], minlength=n_groups).reshape(n_assets, 2)
        mean = total.reshape(n_assets, 2) / np.maximum(count, 1)
        enough = (count >= MIN_HALF).all(axis=1)
        out[enough, j] = mean[enough, 1] - mean[enough, 0]
    last = np.zeros(n_assets, dtype=np.intp)
    if len(asset):
        ends = np.flatnonzero(np.r_[asset[1:] != asset[:-1], True])
        last[asset[ends]] = stage[ends]
    return out, groups(last, length)


@dataclass(frozen=True)
class AssetChanges:
    """Per asset of a batch: raw and health-adjusted half-differences and the null group."""

    raw: Array  # (assets, columns) residual half-difference
    covariate: Array  # (assets, columns) health-index change without the column
    groups: NDArray[np.intp]

    def subset(self, mask: NDArray[np.bool_]) -> AssetChanges:
        return AssetChanges(self.raw[mask], self.covariate[mask], self.groups[mask])

    @property
    def stages(self) -> NDArray[np.intp]:
        return np.asarray(self.groups // (len(LENGTH_EDGES) + 1), dtype=np.intp)

    def net(self, slopes: Array) -> Array:
        """Half-differences net of the health-index change, at the slope of the asset's stage."""
        return np.asarray(self.raw - slopes[self.stages] * self.covariate, dtype=np.float64)


def asset_changes(
    layout: Layout,
    rows: Rows,
    cell: NDArray[np.intp],
    residual: Array,
    usable: NDArray[np.bool_],
    health_weights: Array,
) -> AssetChanges:
    """Half-differences of a prepared batch (see the module docstring)."""
    asset = rows.asset[rows.known]
    stage = cell % layout.stages.n_stages
    raw, group = half_differences(asset, rows.position, stage, residual, usable)
    n_sensors = len(health_weights)
    channels = rows.values[:, : n_sensors + 1]
    moved, _ = half_differences(asset, rows.position, stage, channels, np.isfinite(channels))
    health = moved[:, n_sensors]
    covariate = np.tile(health[:, None], (1, raw.shape[1]))
    covariate[:, :n_sensors] -= moved[:, :n_sensors] * health_weights[None, :]
    raw[:, n_sensors] = np.nan  # the health index: its sensors carry the test
    return AssetChanges(
        raw=raw, covariate=np.where(np.isfinite(covariate), covariate, 0.0), groups=group
    )


def fit_slopes(changes: AssetChanges, n_stages: int) -> Array:
    """Per health stage (at the stretch's end) and column, the least-squares slope through 0 of
    the half-difference on its covariate: degradation speeds up toward failure."""
    pooled = _slopes(changes.raw, changes.covariate)
    out = np.tile(pooled, (n_stages, 1))
    for stage in range(n_stages):
        mine = changes.stages == stage
        if mine.sum() >= _ENOUGH:
            out[stage] = _slopes(changes.raw[mine], changes.covariate[mine])
    return out


def _slopes(raw: Array, covariate: Array) -> Array:
    ok = np.isfinite(raw)
    c = np.where(ok, covariate, 0.0)
    d = np.where(ok, raw, 0.0)
    spread = (c**2).sum(axis=0)
    return np.where(spread > 0, (c * d).sum(axis=0) / np.maximum(spread, 1e-12), 0.0)


def length_band(length: Array) -> NDArray[np.intp]:
    return np.searchsorted(np.asarray(LENGTH_EDGES), length, side="right").astype(np.intp)


def groups(stage: NDArray[np.intp], length: Array) -> NDArray[np.intp]:
    """Null group of each asset: its health stage at its last reading x its length band. Late in
    life an asset moves faster than the expected path can follow, and a fleet streamed from new
    has all its assets there at once: a single pooled null would call that change."""
    return stage * (len(LENGTH_EDGES) + 1) + length_band(length)


def null_limits(differences: Array, group: NDArray[np.intp], n_stages: int) -> Array:
    """Per null group and column, the (1 - NULL_RATE) quantile of |difference| on clean
    stretches; a group with too few stretches takes its stage's quantile, else the pooled one."""
    n_bands = len(LENGTH_EDGES) + 1
    magnitude = np.abs(differences)
    pooled = _quantile(magnitude)
    limits = np.tile(pooled, (n_stages * n_bands, 1))
    for stage in range(n_stages):
        in_stage = (group // n_bands) == stage
        base = _quantile(magnitude[in_stage]) if in_stage.sum() >= _ENOUGH else pooled
        for band in range(n_bands):
            mine = magnitude[group == stage * n_bands + band]
            limits[stage * n_bands + band] = _quantile(mine) if len(mine) >= _ENOUGH else base
    return np.where(np.isfinite(limits), limits, np.inf)


def _quantile(values: Array) -> Array:
    out = np.full(values.shape[1], np.inf)
    for j in range(values.shape[1]):
        finite = values[:, j][np.isfinite(values[:, j])]
        if len(finite) >= _ENOUGH:
            out[j] = float(np.quantile(finite, 1.0 - NULL_RATE))
    return out


def changed(differences: Array, group: NDArray[np.intp], limits: Array) -> NDArray[np.bool_]:
    """(assets, columns): the asset's difference exceeds the null limit of its group."""
    return np.asarray(np.isfinite(differences) & (np.abs(differences) > limits[group]))


def binomial_limit(n: int, alpha: float) -> int:
    """The smallest count k with P(Binomial(n, NULL_RATE) >= k) <= alpha."""
    if n <= 0:
        return 1
    log_p, log_q = math.log(NULL_RATE), math.log1p(-NULL_RATE)
    lgn = math.lgamma(n + 1)
    tail = 0.0
    for k in range(n, -1, -1):
        term = math.exp(lgn - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p)
        tail += term * math.exp((n - k) * log_q)
        if tail > alpha:
            return k + 1
    return 1
