"""What a plan starts from: each asset's latest prediction, checked, as arrays.

Two sources give the same table: ``ModelBundle.predict`` (``prognos predict``'s columns) and the
stored predictions (``should_inspect`` for ``alert``, ``rul_upper`` NULL for open above).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.errors import PlanError

REQUIRED = ("asset_id", "rul", "rul_lower", "rul_upper", "failure_probability")


@dataclass(frozen=True)
class FleetRisk:
    """One row per asset: RUL, its interval (``upper`` NaN = open above), the calibrated
    probability of failing within the model's horizon and its alert (the cost-optimal "inspect")."""

    asset_ids: tuple[str, ...]
    rul: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    failure_probability: NDArray[np.float64]
    alert: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.asset_ids)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FleetRisk:
        """From ``prognos predict`` output (or stored rows: ``should_inspect`` is the alert)."""
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise PlanError(f"predictions lack column(s): {', '.join(missing)}")
        ids = tuple(str(a) for a in frame["asset_id"])
        if len(set(ids)) != len(ids):
            dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
            raise PlanError(f"one prediction per asset expected; {dup!r} has several")
        proba = _numbers(frame["failure_probability"], "failure_probability")
        bad = ~np.isfinite(proba) | (proba < 0) | (proba > 1)
        if bad.any():
            first = ids[int(np.argmax(bad))]
            raise PlanError(f"failure_probability must lie in [0, 1]; asset {first!r} has not")
        alert_column = "alert" if "alert" in frame.columns else "should_inspect"
        alert = (
            frame[alert_column].fillna(False).astype(bool).to_numpy()
            if alert_column in frame.columns
            else np.ones(len(ids), dtype=bool)
        )
        return cls(
            asset_ids=ids,
            rul=_numbers(frame["rul"], "rul"),
            lower=_numbers(frame["rul_lower"], "rul_lower"),
            upper=_numbers(frame["rul_upper"], "rul_upper"),
            failure_probability=proba,
            alert=alert,
        )

    @classmethod
    def from_records(cls, rows: Sequence[Mapping[str, Any]]) -> FleetRisk:
        """From stored prediction rows (``repository``'s dicts)."""
        return cls.from_frame(pd.DataFrame(list(rows), columns=[*REQUIRED, "should_inspect"]))

    def aged(self, elapsed: NDArray[np.float64]) -> FleetRisk:
        """The same fleet ``elapsed`` time units later: RUL and interval shifted down (clipped at
        0), for predictions made some time before the plan."""
        e = np.maximum(np.asarray(elapsed, dtype=np.float64), 0.0)
        return FleetRisk(
            asset_ids=self.asset_ids,
            rul=np.maximum(self.rul - e, 0.0),
            lower=np.maximum(self.lower - e, 0.0),
            upper=np.maximum(self.upper - e, 0.0),  # NaN (open) stays NaN
            failure_probability=self.failure_probability,
            alert=self.alert,
        )


def _numbers(column: pd.Series, name: str) -> NDArray[np.float64]:
    try:
        return pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"predictions column {name} is not numeric: {exc}") from exc
