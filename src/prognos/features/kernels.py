"""The arithmetic of every windowed feature, shared by the offline and online paths.

Written by hand rather than with ``pandas.rolling`` because the two paths must agree to the last
bit (parity at rtol 1e-9 breaks on near-zero slopes and means otherwise) and the online path must
cost microseconds. Both paths call :func:`window_features` with the same operations in the same
order on arrays of shape (rows, channels): offline ``rows`` is the whole history, online it is 1.
Only elementwise ufuncs are used, so a value depends on its own row alone and never on how many
rows were computed together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prognos.features.spec import FeatureSpec

Array = NDArray[np.float64]
# lagged(k) -> (values k readings back, clamped to the asset's first reading; 1.0/0.0 validity)
Lagged = Callable[[int], tuple[Array, Array]]


@dataclass(frozen=True)
class FeatureLayout:
    """Column positions of each feature block in the output matrix.

    Blocks are feature-major (all channels of ``mean_10``, then all of ``std_10``, ...), so every
    block is one contiguous slice of columns: cheap to write on both paths.
    """

    channels: tuple[str, ...]
    blocks: tuple[str, ...]  # e.g. "value", "mean_10", "lag_5", "roc_10", "ewma_20"
    extras: tuple[str, ...]  # single columns after the blocks: "age", "regime"

    @classmethod
    def build(cls, spec: FeatureSpec, channels: list[str]) -> FeatureLayout:
        blocks = ["value"]
        for w in spec.windows:
            blocks += [f"{agg}_{w}" for agg in spec.aggregations]
        blocks += [f"lag_{k}" for k in spec.lags]
        blocks += [f"roc_{k}" for k in spec.rate_of_change]
        blocks += [f"ewma_{span}" for span in spec.ewma_spans]
        extras = [name for name, on in (("age", spec.include_age),
                                         ("regime", spec.include_regime)) if on]
        return cls(channels=tuple(channels), blocks=tuple(blocks), extras=tuple(extras))

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_features(self) -> int:
        return len(self.blocks) * self.n_channels + len(self.extras)

    def block_slice(self, block: str) -> slice:
        start = self.blocks.index(block) * self.n_channels
        return slice(start, start + self.n_channels)

    def extra_column(self, name: str) -> int:
        return len(self.blocks) * self.n_channels + self.extras.index(name)

    @property
    def names(self) -> list[str]:
        """Stable column names (``sensor_7__mean_10``): part of the model signature."""
        names = [f"{ch}__{block}" for block in self.blocks for ch in self.channels]
        return names + list(self.extras)


def window_features(
    lagged: Lagged, count: Array, spec: FeatureSpec, layout: FeatureLayout, out: Array
) -> None:
    """Fill the value, window, lag and rate-of-change blocks of ``out``.

    ``count`` (rows, 1) is the number of readings the asset has so far, this one included; windows
    of an asset younger than the window are partial (computed over what there is).
    """
    x0, _ = lagged(0)
    out[:, layout.block_slice("value")] = x0
    horizon = spec.history_length
    windows = set(spec.windows)
    lags = set(spec.lags)
    rocs = set(spec.rate_of_change)
    aggs = spec.aggregations
    s1 = np.zeros_like(x0)
    s2 = np.zeros_like(x0)
    st = np.zeros_like(x0)
    lo = x0.copy()
    hi = x0.copy()
    for k in range(horizon):
        xk, valid = lagged(k)
        if k < (max(windows) if windows else 0):
            masked = xk * valid
            s1 += masked
            s2 += masked * xk
            st += masked * float(k)
            # Clamped lags repeat the first reading, already in the window: min/max need no mask.
            np.minimum(lo, xk, out=lo)
            np.maximum(hi, xk, out=hi)
        if k + 1 in windows:
            _write_window(k + 1, count, s1, s2, st, lo, hi, aggs, layout, out)
        if k in lags:
            out[:, layout.block_slice(f"lag_{k}")] = xk
        if k in rocs:
            out[:, layout.block_slice(f"roc_{k}")] = x0 - xk


def _write_window(
    w: int,
    count: Array,
    s1: Array,
    s2: Array,
    st: Array,
    lo: Array,
    hi: Array,
    aggs: list[str],
    layout: FeatureLayout,
    out: Array,
) -> None:
    c = np.minimum(count, float(w))
    mean = s1 / c
    if "mean" in aggs:
        out[:, layout.block_slice(f"mean_{w}")] = mean
    if "std" in aggs:
        # One-pass variance is safe here: channels are standardised (mean ~0, scale ~1).
        var = (s2 - s1 * mean) / np.maximum(c - 1.0, 1.0)
        out[:, layout.block_slice(f"std_{w}")] = np.sqrt(np.maximum(var, 0.0))
    if "min" in aggs:
        out[:, layout.block_slice(f"min_{w}")] = lo
    if "max" in aggs:
        out[:, layout.block_slice(f"max_{w}")] = hi
    if "slope" in aggs:
        # Least-squares slope per reading against t = -k (k readings ago); 0 for one reading.
        sxx = np.where(c > 1.0, c * (c * c - 1.0) / 12.0, 1.0)
        out[:, layout.block_slice(f"slope_{w}")] = (s1 * ((c - 1.0) / 2.0) - st) / sxx


def ewma_step(previous: Array, x: Array, alpha: float) -> Array:
    """One EWMA step; the offline path's ``scipy.signal.lfilter`` performs the same operations."""
    return alpha * x + (1.0 - alpha) * previous
