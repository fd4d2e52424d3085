"""Null calibration of the drift tests by asset-grouped resampling of the training fleet.

A calibration batch is ``m`` held-out training assets, each a random stretch of its life (at
least 20 readings), scored against the reference of the *other* assets only: their histograms and
their mean residual. Against all assets, itself included, a batch's shift would look about
sqrt(3) times smaller than a new fleet's at ``m = n / 2``. Every stretch also gives one null
half-difference per column for the change test. See :mod:`prognos.monitoring.stats` for how the
resamples become thresholds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import chi2, norm

from prognos.monitoring import change
from prognos.monitoring.stats import Calibration, mean_shift, reference_props, score_batch
from prognos.monitoring.strata import N_BINS, Conditions, Layout, Normaliser, Rows, prepare_rows

Array = NDArray[np.float64]

FLOOR = 0.02  # PSI below this is never drift: about a 0.14-standard-deviation mean shift
SHIFT_FLOOR = 0.1  # nor a mean residual below 0.1 reference standard deviations
ALPHA = 0.01  # family-wise false-alarm rate of one clean batch (Bonferroni over the tests)
_MIN_STRETCH = 20
_NULL_READINGS = 1_200_000  # readings of training stretches behind the change test's null


@dataclass(frozen=True)
class Reference:
    """The training fleet as the calibration needs it: raw arrays and per-asset sufficient
    statistics (histogram counts, residual sums) under the final layout."""

    arrays: tuple[NDArray[Any], ...]  # ids, time, settings, sensors, features
    counts: NDArray[np.int64]  # (assets, tests, cells, bins)
    sums: Array  # (2, assets, cells, columns): residual sums and counts


def asset_statistics(layout: Layout, rows: Rows) -> tuple[NDArray[np.int64], Array]:
    """Per asset: histogram counts of every test, and residual sums and counts per cell."""
    cell = layout.cells(rows)
    residual = layout.residuals(rows, cell)
    usable = layout.usable(rows, residual)
    bins = layout.bins(rows, residual)
    asset = rows.asset[rows.known]
    n_assets = int(rows.asset.max()) + 1 if rows.n_rows else 0
    counts = np.zeros((n_assets, layout.n_tests, layout.n_cells, N_BINS), dtype=np.int64)
    bounds = np.flatnonzero(np.r_[True, asset[1:] != asset[:-1], True])
    for a, b in itertools.pairwise(bounds):
        counts[asset[a]] = layout.counts(cell[a:b], bins[a:b])
    sums = np.zeros((2, n_assets, layout.n_cells, len(layout.columns)))
    np.add.at(sums[0], (asset, cell), np.where(usable, residual, 0.0))
    np.add.at(sums[1], (asset, cell), usable.astype(np.float64))
    return counts, sums


def expected_shift(sums: Array, cell: NDArray[np.intp], usable: NDArray[np.bool_]) -> Array:
    """Mean residual the reference assets ``sums`` (2, cells, C) have at a batch's cell mix."""
    mean = sums[0] / np.maximum(sums[1], 1.0)
    weights = np.zeros_like(mean)
    np.add.at(weights, cell, usable.astype(np.float64))
    weights /= np.maximum(weights.sum(axis=0, keepdims=True), 1.0)
    return np.asarray((weights * mean).sum(axis=0), dtype=np.float64)


def grid(n_assets: int) -> list[int]:
    """Batch sizes to calibrate at: powers of two up to half the fleet."""
    top = max(2, n_assets // 2)
    sizes = [m for m in (2, 4, 8, 16, 32, 64, 128) if m < top]
    return [*sizes, top]


@dataclass
class _Draw:
    assets: int
    rows: Array
    scores: Array
    shifts: Array
    changes: change.AssetChanges


def calibrate(
    layout: Layout,
    normaliser: Normaliser,
    conditions: Conditions,
    reference: Reference,
    resamples: int,
    rng: np.random.Generator,
) -> Calibration:
    """Thresholds for every test from ``resamples`` null batches per batch size."""
    ids = reference.arrays[0]
    codes, _ = pd.factorize(ids)
    order = np.argsort(codes, kind="stable")
    n_assets = reference.counts.shape[0]
    starts = np.searchsorted(codes[order], np.arange(n_assets))
    lengths = np.diff(np.r_[starts, len(codes)])
    total = reference.counts.sum(axis=0)
    sizes = grid(n_assets)
    n_columns = len(layout.columns)
    log_mean = np.zeros((layout.n_tests, len(sizes)))
    log_sd = np.zeros((layout.n_tests, len(sizes)))
    shift_sd = np.zeros((n_columns, len(sizes)))
    draws: list[_Draw] = []
    for g, m in enumerate(sizes):
        batch: list[_Draw] = []
        for _ in range(resamples):
            held = rng.choice(n_assets, size=m, replace=False)
            take = []
            for a in held:
                life = int(lengths[a])
                span = int(rng.integers(min(_MIN_STRETCH, life), life + 1))
                begin = int(rng.integers(0, life - span + 1))
                take.append(order[starts[a] + begin : starts[a] + begin + span])
            idx = np.concatenate(take)
            arrays = [np.asarray(a)[idx] for a in reference.arrays]
            rows = prepare_rows(normaliser, conditions, layout.stages.smoothing, *arrays)
            weights = normaliser.health_weights
            batch.append(_null_draw(layout, rows, total, reference, held, weights))
        scores = np.array([d.scores for d in batch])
        shifts = np.array([d.shifts for d in batch])
        logs = np.log(np.maximum(scores, 1e-6))
        log_mean[:, g] = _nan_stat(np.mean, logs, np.log(FLOOR))
        log_sd[:, g] = _nan_stat(np.std, logs, 0.0)
        shift_sd[:, g] = np.sqrt(_nan_stat(np.mean, shifts**2, SHIFT_FLOOR**2))
        draws.extend(batch)
    n_tests = layout.n_tests + 2 * n_columns  # histograms, shifts, changes
    slopes, limits = _change_null(layout, normaliser, conditions, reference, order, rng)
    calibration = Calibration(
        assets=np.asarray(sizes, dtype=np.float64),
        log_mean=log_mean,
        log_sd=log_sd,
        shift_sd=shift_sd,
        change_slopes=slopes,
        change_limits=limits,
        n_tests=n_tests,
        z=float(norm.ppf(1.0 - ALPHA / (2 * n_tests))),
        floor=FLOOR,
        shift_floor=SHIFT_FLOOR,
        multinomial=float(chi2.ppf(1.0 - ALPHA / n_tests, N_BINS - 1)),
        alpha=ALPHA,
        resamples=resamples,
        false_alarms=0.0,
    )
    alarms = sum(_alarm(calibration, d) for d in draws)
    return replace(calibration, false_alarms=alarms / max(len(draws), 1))


def _null_draw(
    layout: Layout,
    rows: Rows,
    total: NDArray[np.int64],
    reference: Reference,
    held: NDArray[np.intp],
    weights: Array,
) -> _Draw:
    cell = layout.cells(rows)
    residual = layout.residuals(rows, cell)
    usable = layout.usable(rows, residual)
    counts = layout.counts(cell, layout.bins(rows, residual))
    others = reference_props(total - reference.counts[held].sum(axis=0), layout.stages.n_stages)
    result = score_batch(counts, others)
    rest = reference.sums.sum(axis=1) - reference.sums[:, held].sum(axis=1)
    shift = mean_shift(residual, usable) - expected_shift(rest, cell, usable)
    changes = change.asset_changes(layout, rows, cell, residual, usable, weights)
    return _Draw(
        assets=rows.n_assets, rows=result.rows, scores=result.score, shifts=shift, changes=changes
    )


def _change_null(
    layout: Layout,
    normaliser: Normaliser,
    conditions: Conditions,
    reference: Reference,
    order: NDArray[np.intp],
    rng: np.random.Generator,
) -> tuple[Array, Array]:
    """The change test's null: half-differences of many random stretches of training lives
    (each stretch its own pseudo-asset), in chunks of about 100,000 readings.

    A third of the stretches end at the asset's last reading; the others in a health stage drawn
    uniformly from the asset's stages, so that the late stages, a small share of any life, get
    as many null stretches as the early ones.
    """
    del order
    _, time, *values = reference.arrays
    full = prepare_rows(normaliser, conditions, layout.stages.smoothing, *reference.arrays)
    stage = np.full(full.n_rows, -1, dtype=np.intp)
    stage[full.known] = layout.cells(full) % layout.stages.n_stages
    starts = np.flatnonzero(np.r_[True, full.asset[1:] != full.asset[:-1]])
    lengths = np.diff(np.r_[starts, full.n_rows])
    per_asset = int(np.clip(_NULL_READINGS / max(full.n_rows, 1), 5, 60))
    stretches, half = [], []
    for number, (start, life) in enumerate(zip(starts, lengths, strict=True)):
        own = stage[start : start + life]
        present = np.unique(own[own >= 0])
        if not len(present):
            continue
        for k, target in enumerate(rng.choice(present, size=per_asset)):
            # A third end at the asset's last reading: batches of whole lives end at failure,
            # the fastest stretch of any life, and must not look changed for it.
            last = k % 3 == 0 and own[-1] >= 0
            end = life - 1 if last else int(rng.choice(np.flatnonzero(own == target)))
            span = int(rng.integers(min(_MIN_STRETCH, end + 1), end + 2))
            stretches.append(full.order[start + end + 1 - span : start + end + 1])
            half.append(number % 2)
    found: list[change.AssetChanges] = []
    chunk: list[tuple[int, NDArray[np.intp]]] = []
    size = 0
    for k, stretch in enumerate(stretches):
        chunk.append((k, stretch))
        size += len(stretch)
        if size >= 100_000 or k == len(stretches) - 1:
            idx = np.concatenate([s for _, s in chunk])
            pseudo = np.repeat([k for k, _ in chunk], [len(s) for _, s in chunk])
            rows = prepare_rows(
                normaliser,
                conditions,
                layout.stages.smoothing,
                pseudo,
                np.asarray(time)[idx],
                *[np.asarray(v)[idx] for v in values],
            )
            cell = layout.cells(rows)
            residual = layout.residuals(rows, cell)
            usable = layout.usable(rows, residual)
            weights = normaliser.health_weights
            found.append(change.asset_changes(layout, rows, cell, residual, usable, weights))
            chunk, size = [], 0
    pooled = change.AssetChanges(
        raw=np.concatenate([f.raw for f in found]),
        covariate=np.concatenate([f.covariate for f in found]),
        groups=np.concatenate([f.groups for f in found]),
    )
    # Cross-fitted: the limits come from net differences of one half of the assets at slopes
    # fitted on the other half (in-sample slopes would make the null look tighter than it is for
    # a new fleet).
    n_stages = layout.stages.n_stages
    side = np.asarray(half, dtype=bool)
    net = np.empty_like(pooled.raw)
    for mine in (side, ~side):
        slopes = change.fit_slopes(pooled.subset(~mine), n_stages)
        net[mine] = pooled.subset(mine).net(slopes)
    return change.fit_slopes(pooled, n_stages), change.null_limits(net, pooled.groups, n_stages)


def _alarm(calibration: Calibration, draw: _Draw) -> bool:
    """Whether a null batch raises any alarm at the calibrated thresholds (the diagnostic)."""
    psi_limit, shift_limit = calibration.thresholds(draw.assets, draw.rows)
    if (draw.scores > psi_limit).any() or (np.abs(draw.shifts) > shift_limit).any():
        return True
    net = draw.changes.net(calibration.change_slopes)
    moved = change.changed(net, draw.changes.groups, calibration.change_limits)
    eligible = np.isfinite(net).sum(axis=0)
    alpha = calibration.alpha / calibration.n_tests
    return any(
        moved[:, j].sum() >= change.binomial_limit(int(eligible[j]), alpha)
        for j in range(moved.shape[1])
        if eligible[j]
    )


def _nan_stat(stat: Callable[[Array], float], values: Array, default: float) -> Array:
    """``stat`` over resamples per test, ``default`` where a test never had enough readings."""
    finite = np.isfinite(values)
    out = np.full(values.shape[1], default)
    for j in np.flatnonzero(finite.any(axis=0)):
        out[j] = float(stat(values[finite[:, j], j]))
    return out
