"""The figures of the EDA report: plain matplotlib on the Agg backend, one function per figure.

Scatter plots draw at most ``MAX_POINTS`` readings (a fixed-seed sample): 50,000 dots show no more
than 4,000 and make the page heavy. Binned medians are drawn over the sample from all rows.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_POINTS = 4_000
_CMAP = "tab10"


def _plt() -> Any:  # matplotlib.pyplot, imported on first use
    import matplotlib

    matplotlib.use("Agg")  # files only; chosen at call time so importing has no side effect
    import matplotlib.pyplot as plt

    return plt


def sample(n: int, size: int = MAX_POINTS, seed: int = 0) -> NDArray[np.intp]:
    """Sorted positions of at most ``size`` of ``n`` rows, the same on every run."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def life_lengths(lengths: pd.Series, run_to_failure: bool) -> Figure:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(lengths.to_numpy(), bins=min(30, max(5, len(lengths) // 4)), color="#4477aa")
    what = "life length (cycles to failure)" if run_to_failure else "readings per asset"
    ax.set(xlabel=what, ylabel="assets", title=f"{len(lengths)} assets")
    return fig


def binned_median(
    x: NDArray[np.float64], y: NDArray[np.float64], bins: int = 25
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Median of ``y`` in equal-width bins of ``x`` (empty bins left out)."""
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if not len(x) or x.min() == x.max():
        return np.zeros(0), np.zeros(0)
    edges = np.linspace(x.min(), x.max(), bins + 1)
    which = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "y": y}).groupby("bin")["y"].median()
    centres = (edges[:-1] + edges[1:]) / 2
    return centres[frame.index.to_numpy()], frame.to_numpy()


def against_target(
    values: pd.DataFrame, target: NDArray[np.float64], regime: NDArray[np.intp], xlabel: str
) -> Figure:
    """One small panel per channel: value against the target, coloured by regime, with the
    binned median of all rows."""
    plt = _plt()
    names = list(values.columns)
    cols = 4
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    keep = sample(len(values))
    for ax, name in zip(axes.flat, names, strict=False):
        column = values[name].to_numpy(dtype=np.float64)
        ax.scatter(
            target[keep], column[keep], c=regime[keep], s=2, alpha=0.3, cmap=_CMAP, vmin=0, vmax=9
        )
        x, y = binned_median(target, column)
        ax.plot(x, y, color="black", linewidth=1.2)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if xlabel.startswith(("RUL", "time to")):
            ax.invert_xaxis()  # time runs left to right: failure at the right
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel(xlabel, fontsize=9)
    fig.tight_layout()
    return fig


def correlation_heatmap(corr: pd.DataFrame) -> Figure:
    plt = _plt()
    n = len(corr)
    fig, ax = plt.subplots(figsize=(0.45 * n + 2.5, 0.45 * n + 2))
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), corr.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), corr.index, fontsize=7)
    if n <= 24:
        values = corr.to_numpy(dtype=np.float64)
        for i in range(n):
            for j in range(n):
                value = float(values[i, j])
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=5.5)
    fig.colorbar(image, ax=ax, shrink=0.7)
    fig.tight_layout()
    return fig


def settings_scatter(settings: pd.DataFrame, regime: NDArray[np.intp]) -> Figure:
    """Operating settings coloured by regime: pairs of consecutive settings, or a histogram for
    a single setting."""
    plt = _plt()
    names = list(settings.columns)
    keep = sample(len(settings))
    if len(names) == 1:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(settings[names[0]].to_numpy(), bins=50, color="#4477aa")
        ax.set(xlabel=names[0], ylabel="readings")
        return fig
    pairs = list(itertools.pairwise(names))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.5), squeeze=False)
    for ax, (a, b) in zip(axes.flat, pairs, strict=True):
        ax.scatter(
            settings[a].to_numpy()[keep],
            settings[b].to_numpy()[keep],
            c=regime[keep],
            s=4,
            cmap=_CMAP,
            vmin=0,
            vmax=9,
        )
        ax.set(xlabel=a, ylabel=b)
    # The legend counts every reading per colour (the scatter shows a sample).
    cmap = plt.get_cmap(_CMAP)
    ids, counts = np.unique(regime, return_counts=True)
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=cmap(int(r) % 10), label=f"{n:,}")
        for r, n in zip(ids, counts, strict=True)
    ]
    axes.flat[-1].legend(handles=handles, title="readings", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    return fig


def health_index(hi: NDArray[np.float64], target: NDArray[np.float64], xlabel: str) -> Figure:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    keep = sample(len(hi))
    ax.scatter(target[keep], hi[keep], s=2, alpha=0.3, color="#aa3377")
    x, y = binned_median(target, hi)
    ax.plot(x, y, color="black", linewidth=1.5, label="median")
    ax.set(xlabel=xlabel, ylabel="health index (rises with wear)")
    if xlabel.startswith(("RUL", "time to")):
        ax.invert_xaxis()
    ax.legend(fontsize=8)
    return fig


def asset_trends(trends: dict[str, pd.DataFrame], age_label: str) -> Figure:
    """One panel per asset: its regime-normalised channels against age."""
    plt = _plt()
    n = max(1, len(trends))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3), squeeze=False, sharey=True)
    for ax, (asset, frame) in zip(axes.flat, trends.items(), strict=False):
        for name in frame.columns:
            ax.plot(frame.index.to_numpy(), frame[name].to_numpy(), linewidth=0.9, label=name)
        ax.set_title(f"asset {asset}", fontsize=9)
        ax.set_xlabel(age_label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("normalised value (per regime)", fontsize=8)
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return fig
