"""Interval coverage as a monitored condition: the served RUL interval (e.g. 90%) must cover
about that share of the RULs that came true.

Conformal intervals promise their coverage only while new data look like the calibration data;
a coverage that drifts out of the stated band says the intervals can no longer be taken at their
word, even when the point predictions still look fine. Fewer realised RULs than ``min_count``
are too noisy to flag (with 20, one miss moves coverage by 5 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from prognos.storage.monitoring import Metric

__all__ = ["CoverageResult", "interval_coverage"]


@dataclass(frozen=True)
class CoverageResult:
    count: int
    covered: int
    coverage: float  # NaN with no realised RUL
    nominal: float
    band: tuple[float, float]
    min_count: int

    @property
    def out_of_band(self) -> bool:
        """True only with enough realised RULs and a coverage outside the band."""
        low, high = self.band
        return self.count >= self.min_count and not low <= self.coverage <= high

    @property
    def status(self) -> str:
        if self.count < self.min_count:
            return "insufficient"
        return "out_of_band" if self.out_of_band else "ok"

    def metrics(self) -> list[Metric]:
        return [
            Metric("model_interval_coverage_current", self.coverage),
            Metric("model_interval_coverage_nominal", self.nominal),
            Metric("model_interval_coverage_out_of_band", 1.0 if self.out_of_band else 0.0),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "covered": self.covered,
            "coverage": self.coverage,
            "nominal": self.nominal,
            "band": list(self.band),
            "min_count": self.min_count,
            "status": self.status,
            "out_of_band": self.out_of_band,
        }


def interval_coverage(
    realised: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    nominal: float,
    band: tuple[float, float],
    min_count: int,
) -> CoverageResult:
    """Share of ``lower <= realised <= upper``, judged against ``band``."""
    if band[0] > band[1]:
        raise ValueError(f"coverage band {band} is not ordered")
    y = np.asarray(realised, dtype="float64")
    inside = (np.asarray(lower) <= y) & (y <= np.asarray(upper))
    covered = int(np.count_nonzero(inside))
    return CoverageResult(
        count=int(y.size),
        covered=covered,
        coverage=covered / y.size if y.size else math.nan,
        nominal=float(nominal),
        band=(float(band[0]), float(band[1])),
        min_count=int(min_count),
    )
