"""The arithmetic of every windowed feature, shared by the offline and online paths.

Written by hand rather than with ``pandas.rolling`` because the two paths must agree to the last
bit (parity at rtol 1e-9 breaks on near-zero slopes and means otherwise) and the online path must
cost microseconds. Both paths call :func:`window_features` with a stack of lagged values of shape
(lags, rows, channels): offline ``rows`` is a chunk of the history, online it is 1. Reductions run
along the lag axis only (``cumsum`` and ``accumulate`` are sequential there), so a value depends on
its own row alone and never on how many rows were computed together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from prognos.features.spec import FeatureSpec

Array = NDArray[np.float64]
_ACCUMULATE_ROWS = 8


@dataclass(frozen=True)
class FeatureLayout:
    """Column positions of each feature block in the output matrix.

    Blocks are feature-major (all channels of ``mean_5``, then of ``mean_10``, ...) so that each
    aggregation over all windows is one contiguous run of columns, written in one assignment.
    """

    channels: tuple[str, ...]
    windows: tuple[int, ...]
    aggregations: tuple[str, ...]
    lags: tuple[int, ...]
    rocs: tuple[int, ...]
    spans: tuple[int, ...]
    extras: tuple[str, ...]  # single columns after the blocks: "age", "regime"
    _starts: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, spec: FeatureSpec, channels: list[str]) -> FeatureLayout:
        extras = [n for n, on in (("age", spec.include_age), ("regime", spec.include_regime)) if on]
        layout = cls(
            channels=tuple(channels),
            windows=tuple(spec.windows),
            aggregations=tuple(spec.aggregations),
            lags=tuple(spec.lags),
            rocs=tuple(spec.rate_of_change),
            spans=tuple(spec.ewma_spans),
            extras=tuple(extras),
        )
        for i, block in enumerate(layout.blocks):
            layout._starts[block] = i * len(channels)
        return layout

    @property
    def blocks(self) -> list[str]:
        blocks = ["value"]
        blocks += [f"{agg}_{w}" for agg in self.aggregations for w in self.windows]
        blocks += [f"lag_{k}" for k in self.lags]
        blocks += [f"roc_{k}" for k in self.rocs]
        return blocks + [f"ewma_{span}" for span in self.spans]

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_features(self) -> int:
        return len(self._starts) * self.n_channels + len(self.extras)

    def block_slice(self, block: str, n_blocks: int = 1) -> slice:
        """Columns of ``block`` and the ``n_blocks - 1`` blocks after it."""
        start = self._starts[block]
        return slice(start, start + n_blocks * self.n_channels)

    def extra_column(self, name: str) -> int:
        return len(self._starts) * self.n_channels + self.extras.index(name)

    @property
    def names(self) -> list[str]:
        """Stable column names (``sensor_7__mean_10``): part of the model signature."""
        names = [f"{ch}__{block}" for block in self.blocks for ch in self.channels]
        return names + list(self.extras)


def lag_depth(spec: FeatureSpec) -> int:
    """How many lagged readings (the current one is lag 0) the kernel needs."""
    return spec.history_length


def gather_lags(
    padded_channels: Array, pos: NDArray[np.intp], rows: NDArray[np.intp], depth: int
) -> tuple[Array, Array]:
    """Lag stacks (channels, lags, rows) for the given rows of a history.

    ``padded_channels`` is (channels, n + 1): rows sorted by asset then time as columns, plus a
    final zero column; ``rows`` are positions in that order and ``pos`` each one's position
    within its asset.
    """
    lags = np.arange(depth)[:, None]
    at = rows[None, :]
    lagged = np.take(padded_channels, at - np.minimum(pos[None, :], lags), axis=1)
    zero_column = padded_channels.shape[1] - 1
    padded = np.take(
        padded_channels, np.where(pos[None, :] >= lags, at - lags, zero_column), axis=1
    )
    return lagged, padded


def window_features(
    lagged: Array, padded: Array, count: Array, layout: FeatureLayout, out: Array
) -> None:
    """Fill the value, window, lag and rate-of-change blocks of ``out`` (rows, features).

    ``lagged[c, k, r]`` is channel c of row r's reading k readings back, clamped to the asset's
    first reading; ``padded`` is the same with 0.0 where the asset has no reading k back (so sums
    skip it); ``count`` (rows,) is how many readings each row's asset has so far, so windows of a
    young asset are partial. Rows are the innermost axis: every operation is a long contiguous
    vector operation offline, and the same operation on one row online.
    """
    rows = lagged.shape[2]
    x0 = lagged[:, 0, :]
    out[:, layout.block_slice("value")] = x0.T
    windows = layout.windows
    if windows:
        depth = windows[-1]
        ends = [w - 1 for w in windows]
        part = lagged[:, :depth, :]
        masked = padded[:, :depth, :]
        s1 = _prefix(np.add, masked, ends)
        c = np.minimum(count[None, None, :], np.array(windows, dtype=np.float64)[None, :, None])
        mean = s1 / c
        for agg in layout.aggregations:
            if agg == "mean":
                value = mean
            elif agg == "std":
                # One-pass variance is safe here: channels are standardised (mean ~0, scale ~1).
                s2 = _prefix(np.add, masked * masked, ends)
                var = (s2 - s1 * mean) / np.maximum(c - 1.0, 1.0)
                value = np.sqrt(np.maximum(var, 0.0))
            elif agg == "min":
                # Clamped lags repeat the first reading, already in the window: no mask needed.
                value = _prefix(np.minimum, part, ends)
            elif agg == "max":
                value = _prefix(np.maximum, part, ends)
            else:  # slope: least squares against t = -k, per reading; 0 for a single reading
                k = np.arange(depth, dtype=np.float64)[None, :, None]
                st = _prefix(np.add, masked * k, ends)
                sxx = np.where(c > 1.0, c * (c * c - 1.0) / 12.0, 1.0)
                value = (s1 * ((c - 1.0) / 2.0) - st) / sxx
            out[:, layout.block_slice(f"{agg}_{windows[0]}", len(windows))] = _side_by_side(
                value, rows
            )
    if layout.lags:
        out[:, layout.block_slice(f"lag_{layout.lags[0]}", len(layout.lags))] = _side_by_side(
            lagged[:, list(layout.lags), :], rows
        )
    if layout.rocs:
        out[:, layout.block_slice(f"roc_{layout.rocs[0]}", len(layout.rocs))] = _side_by_side(
            x0[:, None, :] - lagged[:, list(layout.rocs), :], rows
        )


def _prefix(op: np.ufunc, stack: Array, ends: list[int]) -> Array:
    """``op``-accumulation along the lag axis of (channels, lags, rows), taken at ``ends``.

    Both branches perform, per element, the same operations in the same order
    (acc_0 = x_0, acc_k = op(acc_{k-1}, x_k)), so they give the same bits; they differ in speed
    only. ``ufunc.accumulate`` always loops over the accumulated axis innermost: ideal for one row
    (online), ~10x slower than a loop of contiguous vector operations for many rows (offline).
    """
    if stack.shape[2] <= _ACCUMULATE_ROWS:
        return op.accumulate(stack, axis=1)[:, ends, :]
    acc = stack[:, 0, :].copy()
    taken = [acc.copy()] if ends[0] == 0 else []
    for k in range(1, ends[-1] + 1):
        op(acc, stack[:, k, :], out=acc)
        if k in ends:
            taken.append(acc.copy())
    return np.stack(taken, axis=1)


def _side_by_side(blocks: Array, rows: int) -> Array:
    """(channels, blocks, rows) -> (rows, blocks * channels), block-major columns."""
    return blocks.transpose(2, 1, 0).reshape(rows, -1)


def ewma_step(previous: Array, x: Array, alpha: float) -> Array:
    """One EWMA step; the offline path's ``scipy.signal.lfilter`` performs the same operations."""
    return alpha * x + (1.0 - alpha) * previous
