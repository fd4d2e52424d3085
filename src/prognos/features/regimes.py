"""Operating regimes: clusters in settings space, found once at fit and assigned per reading."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.cluster import KMeans


def choose_n_regimes(
    settings: NDArray[np.float64], *, max_regimes: int = 8, sharpness: float = 0.01, seed: int = 0
) -> int:
    """Number of discrete operating regimes in the settings, 1 when there are none.

    Discrete flight conditions show as one sharp elbow: at the true k the within-cluster sum of
    squares collapses by orders of magnitude relative to k-1 (C-MAPSS FD002: 7e-3 -> 1.5e-6 of the
    total at k=6), while noise around one condition (FD001) falls smoothly. We take the k with the
    sharpest drop if that drop is below ``sharpness``.
    """
    z = _standardise(settings)[0]
    if z.shape[1] == 0 or len(z) < 2:
        return 1
    sample = _sample(z, 5_000, seed)
    previous = float(((sample - sample.mean(axis=0)) ** 2).sum())
    if previous == 0.0:
        return 1
    best_k, best_ratio = 1, 1.0
    for k in range(2, max_regimes + 1):
        if k > len(np.unique(sample, axis=0)):
            break
        inertia = float(KMeans(n_clusters=k, n_init=2, random_state=seed).fit(sample).inertia_)
        ratio = inertia / previous if previous > 0 else 1.0
        if ratio < best_ratio:
            best_k, best_ratio = k, ratio
        if inertia == 0.0:
            break
        previous = inertia
    return best_k if best_ratio < sharpness else 1


def _sample(z: NDArray[np.float64], size: int, seed: int) -> NDArray[np.float64]:
    if len(z) <= size:
        return z
    return z[np.random.default_rng(seed).choice(len(z), size, replace=False)]


def _standardise(
    settings: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    mean = settings.mean(axis=0) if len(settings) else np.zeros(settings.shape[1])
    scale = settings.std(axis=0) if len(settings) else np.ones(settings.shape[1])
    scale = np.where(scale > 0, scale, 1.0)
    return (settings - mean) / scale, mean, scale


@dataclass(frozen=True)
class RegimeModel:
    """Nearest-centre assignment in standardised settings space.

    Assignment is written with plain elementwise NumPy (not ``KMeans.predict``) so that one reading
    costs microseconds on the serving path and gives the same answer as the batch path.
    """

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    centres: NDArray[np.float64]  # (n_regimes, n_settings), standardised

    @property
    def n_regimes(self) -> int:
        return int(self.centres.shape[0])

    @classmethod
    def fit(
        cls,
        settings: NDArray[np.float64],
        n_regimes: int | str = "auto",
        *,
        max_regimes: int = 8,
        seed: int = 0,
    ) -> RegimeModel:
        z, mean, scale = _standardise(settings)
        k = (
            choose_n_regimes(settings, max_regimes=max_regimes, seed=seed)
            if n_regimes == "auto"
            else int(n_regimes)
        )
        if k <= 1 or z.shape[1] == 0:
            centres = np.zeros((1, z.shape[1]))
        else:
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(_sample(z, 20_000, seed))
            # Order regimes by their centre so regime ids are stable across refits.
            centres = km.cluster_centers_[np.lexsort(km.cluster_centers_.T[::-1])]
        return cls(mean=mean, scale=scale, centres=np.ascontiguousarray(centres))

    def assign(self, settings: NDArray[np.float64]) -> NDArray[np.intp]:
        """Regime index per row of ``settings`` (n, n_settings)."""
        if self.n_regimes == 1:
            return np.zeros(len(settings), dtype=np.intp)
        z = (settings - self.mean) / self.scale
        distance = ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return np.argmin(distance, axis=1)
