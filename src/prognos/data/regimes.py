"""Operating regimes: discrete operating conditions found in the settings, assigned per reading.

One implementation serves ``prognos data inspect`` (how many regimes, where) and the feature
pipeline (standardise each sensor within its regime).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

_SAMPLE = 5_000  # the regime search needs no more rows than this
_N_INIT = 4
_REFINE = 0.1  # past the threshold, one more regime must remove 90% of what is left


@dataclass(frozen=True)
class RegimeModel:
    """Nearest-centre assignment on standardised, clustered setting columns.

    Assignment is plain elementwise NumPy rather than ``KMeans.predict`` so that one reading costs
    microseconds on the serving path and gets the same answer as in a batch.
    """

    columns: NDArray[np.intp]  # setting columns that take part
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    centres: NDArray[np.float64]  # (n_regimes, len(columns)), standardised

    @property
    def n_regimes(self) -> int:
        return int(self.centres.shape[0])

    @classmethod
    def single(cls) -> RegimeModel:
        return cls(np.zeros(0, dtype=np.intp), np.zeros(0), np.ones(0), np.zeros((1, 0)))

    @classmethod
    def fit(
        cls,
        settings: NDArray[np.float64],
        n_regimes: int | str = "auto",
        *,
        max_regimes: int = 8,
        explained: float = 0.99,
        seed: int = 0,
    ) -> RegimeModel:
        """Find the regimes (``n_regimes="auto"``) or fit exactly ``n_regimes`` of them.

        Auto: the smallest k whose KMeans clusters explain ``explained`` of the standardised
        settings' variance; discrete flight conditions (C-MAPSS FD002: six) collapse it by orders
        of magnitude while noise around one condition (FD001) never does, giving 1. Two
        refinements keep that rule honest:

        - a setting held constant up to noise standardises to pure noise that no clustering
          explains and would hide every regime, so only settings that are themselves clustered
          (the same rule in 1-D) take part;
        - past the threshold, k keeps growing while one more cluster still removes 90% of the
          rest: nearby conditions (FD002's 35 and 42 kft) otherwise merge just under the line.

        Deterministic: fixed seed, a fixed sample of at most 5,000 rows, one thread.
        """
        if settings.ndim == 1:
            settings = settings[:, None]
        settings = settings[~np.isnan(settings).any(axis=1)]
        if len(settings) < 2 or settings.shape[1] == 0 or n_regimes == 1:
            return cls.single()
        if len(settings) > _SAMPLE:
            rng = np.random.default_rng(seed)
            settings = settings[np.sort(rng.choice(len(settings), _SAMPLE, replace=False))]
        mean, scale = settings.mean(axis=0), settings.std(axis=0)
        z = (settings - mean) / np.where(scale > 0, scale, 1.0)
        # One thread: faster for these small fits (no pool start-up) and bit-for-bit reproducible.
        with threadpool_limits(limits=1):
            if n_regimes == "auto":
                columns = np.array(
                    [
                        j
                        for j in np.flatnonzero(scale > 0)
                        if _search(z[:, [j]], max_regimes, explained, seed)[0] > 1
                    ],
                    dtype=np.intp,
                )
                if len(columns) == 0:
                    return cls.single()
                _, model = _search(z[:, columns], max_regimes, explained, seed)
            else:
                columns = np.flatnonzero(scale > 0)
                model = KMeans(n_clusters=int(n_regimes), n_init=_N_INIT, random_state=seed)
                model.fit(z[:, columns])
        if model is None:
            return cls.single()
        centres = model.cluster_centers_
        # Order regimes by centre so that regime ids are stable across refits.
        centres = centres[np.lexsort(centres.T[::-1])]
        return cls(
            columns=columns,
            mean=mean[columns],
            scale=np.where(scale > 0, scale, 1.0)[columns],
            centres=np.ascontiguousarray(centres),
        )

    def assign(self, settings: NDArray[np.float64]) -> NDArray[np.intp]:
        """Regime index per row of ``settings`` (rows, all setting columns)."""
        if self.n_regimes == 1:
            return np.zeros(len(settings), dtype=np.intp)
        z = (settings[:, self.columns] - self.mean) / self.scale
        distance = ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return np.argmin(distance, axis=1)


def find_regimes(
    settings: NDArray[np.float64], max_regimes: int = 8, explained: float = 0.99, seed: int = 0
) -> int:
    """How many operating regimes the settings show (see :meth:`RegimeModel.fit`)."""
    model = RegimeModel.fit(
        np.asarray(settings, dtype=np.float64),
        max_regimes=max_regimes,
        explained=explained,
        seed=seed,
    )
    return model.n_regimes


def _search(
    z: NDArray[np.float64], max_regimes: int, explained: float, seed: int
) -> tuple[int, KMeans | None]:
    total = float(((z - z.mean(axis=0)) ** 2).sum())
    distinct = len(np.unique(z, axis=0))
    best: tuple[int, KMeans] | None = None
    for k in range(2, min(max_regimes, distinct) + 1):
        model = KMeans(n_clusters=k, n_init=_N_INIT, random_state=seed).fit(z)
        if best is None:
            if model.inertia_ <= (1.0 - explained) * total:
                best = (k, model)
        elif model.inertia_ < _REFINE * best[1].inertia_:
            best = (k, model)
        else:
            break
    return best if best is not None else (1, None)
