"""What every model member consumes and produces.

Members see the same rows two ways: the feature matrix (trees, forest) and the last W normalised
channel vectors of each row's asset (the sequence network). Both come from one fitted
``FeaturePipeline``, so training and serving build them identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ModelInput:
    """Rows to learn from or predict for.

    ``features``: (rows, n_features) float64, columns ``feature_names``.
    ``sequences``: (rows, window, channels) float32, oldest first, the row's own reading last;
    positions before the asset's first reading are zero and ``lengths`` (rows,) says how many
    trailing positions are real (1..window), so a network can mask the padding.
    ``groups``: (rows,) asset ids, for grouped splits inside a member (early stopping).
    """

    features: NDArray[np.float64]
    feature_names: list[str]
    sequences: NDArray[np.float32]
    lengths: NDArray[np.int64]
    groups: NDArray[np.object_] | NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def span(self, start: int, stop: int) -> ModelInput:
        """Rows ``start:stop`` as views of these arrays (no copy, unlike :meth:`take`)."""
        return ModelInput(
            features=self.features[start:stop],
            feature_names=self.feature_names,
            sequences=self.sequences[start:stop],
            lengths=self.lengths[start:stop],
            groups=self.groups[start:stop],
        )

    def take(self, rows: NDArray[np.intp]) -> ModelInput:
        return ModelInput(
            features=self.features[rows],
            feature_names=self.feature_names,
            sequences=self.sequences[rows],
            lengths=self.lengths[rows],
            groups=self.groups[rows],
        )


@dataclass(frozen=True)
class Targets:
    """``rul``: capped remaining life (the regression target); ``failed``: 1 if failure within H."""

    rul: NDArray[np.float64]
    failed: NDArray[np.int64]

    @classmethod
    def of(cls, labels: pd.DataFrame) -> Targets:
        """From labelled rows (``rul_capped`` and ``failure_within_h``, as
        :func:`~prognos.data.labels.run_to_failure_labels` writes them)."""
        return cls(
            rul=labels["rul_capped"].to_numpy(dtype=np.float64),
            failed=labels["failure_within_h"].to_numpy(dtype=np.int64),
        )

    def take(self, rows: NDArray[np.intp]) -> Targets:
        return Targets(rul=self.rul[rows], failed=self.failed[rows])


class Member(Protocol):
    """A model usable alone or in the ensemble (scikit-learn contract: ``fit`` returns self)."""

    def fit(self, X: ModelInput, y: Targets) -> Self: ...

    def predict_rul(self, X: ModelInput) -> NDArray[np.float64]: ...

    def predict_proba(self, X: ModelInput) -> NDArray[np.float64]:
        """Probability of failure within H, shape (rows,)."""
        ...

    def predict_rul_and_proba(
        self, X: ModelInput
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Both at once: a network runs once for its two heads."""
        ...
