"""A small monitoring case computed by hand: four assets of a cycle fleet, horizon 10, RUL cap 20.

- A fails at cycle 30 (reported): predictions at 5 and 15 are negatives (30 > t + 10), at 22 and
  30 positives (30 is t itself: a failure logged at t ends cycle t); realised RULs 25, 15, 8, 0.
- B has not failed; its readings reach 40: t=10 (a false alarm) and t=25 are negatives, t=35 is
  censored (40 < 45) and must not count as a negative.
- C's readings reach 20 and its failure at 24 is reported late (``LATE_FEEDBACK``): before it,
  both predictions are unlabelled; after it t=12 is a negative and t=18 a missed positive.
- D's readings reach 20 and an "inspected, no failure" report at cycle 30 makes t=20 a negative.

``A`` at 22 was predicted twice: the newer prediction stands.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prognos.fleet import FleetSpec, SensorSpec
from prognos.monitoring.live import MonitoredModel

FLEET = "rig"
MODEL, VERSION = "tiny", "1"
HORIZON, RUL_CAP = 10, 20.0
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

SPEC = FleetSpec(
    name=FLEET,
    settings=[SensorSpec(name="setting_1", min=0.0, max=1.0)],
    sensors=[SensorSpec(name="sensor_1", min=0.0, max=100.0), SensorSpec(name="sensor_2")],
)

MODEL_FACTS = MonitoredModel(
    name=MODEL,
    version=VERSION,
    spec=SPEC,
    horizon=HORIZON,
    rul_cap=RUL_CAP,
    threshold=0.5,
    coverage=0.9,
)

# (asset, t, failure probability, should_inspect, rul, lower, upper)
PREDICTIONS: list[tuple[str, int, float, bool, float, float, float]] = [
    ("A", 5, 0.1, False, 30.0, 20.0, 40.0),
    ("A", 15, 0.3, False, 12.0, 5.0, 20.0),
    ("A", 22, 0.7, True, 6.0, 2.0, 12.0),
    ("A", 30, 0.9, True, 3.0, 0.0, 6.0),
    ("B", 10, 0.2, True, 40.0, 30.0, 50.0),
    ("B", 25, 0.1, False, 30.0, 20.0, 40.0),
    ("B", 35, 0.6, True, 5.0, 1.0, 9.0),
    ("C", 12, 0.4, False, 20.0, 10.0, 30.0),
    ("C", 18, 0.5, False, 10.0, 8.0, 11.0),
    ("D", 5, 0.05, False, 40.0, 30.0, 50.0),
    ("D", 20, 0.2, False, 30.0, 20.0, 40.0),
]
# Each asset's last reading cycle.
REACHED = {"A": 30, "B": 40, "C": 20, "D": 20}


def prediction_rows() -> list[dict[str, Any]]:
    """The predictions as stored, made over the last hours; plus one superseded duplicate and
    one of another model version (both must be ignored)."""
    rows = []
    for i, (asset, t, p, inspect, rul, lower, upper) in enumerate(PREDICTIONS):
        rows.append(
            {
                "id": f"pred_{asset}_{t}",
                "fleet": FLEET,
                "asset_id": asset,
                "time": t,
                "created_at": NOW - timedelta(hours=5, minutes=-i),
                "model_name": MODEL,
                "model_version": VERSION,
                "failure_probability": p,
                "risk_level": "HIGH" if inspect else "LOW",
                "rul": rul,
                "rul_lower": lower,
                "rul_upper": upper,
                "should_inspect": inspect,
            }
        )
    stale = {**rows[2], "id": "pred_A_22_old", "created_at": NOW - timedelta(hours=6)}
    stale.update(failure_probability=0.01, should_inspect=False, rul=99.0)
    other = {**rows[0], "id": "pred_other", "model_version": "2", "should_inspect": True}
    return [*rows, stale, other]


def reading_rows() -> list[dict[str, Any]]:
    """Readings up to each asset's last cycle, the newest within the last hour; A's cycle 30
    has a missing ``sensor_2`` and an out-of-range ``sensor_1``."""
    rows = []
    for asset, last in REACHED.items():
        for t in range(1, last + 1):
            values: dict[str, float | None] = {"setting_1": 0.5, "sensor_1": 50.0, "sensor_2": 7.0}
            if asset == "A" and t == last:
                values = {"setting_1": 0.5, "sensor_1": 150.0, "sensor_2": None}
            rows.append(
                {
                    "fleet": FLEET,
                    "asset_id": asset,
                    "time": t,
                    "values": values,
                    "received_at": NOW - timedelta(minutes=last - t + 1),
                }
            )
    return rows


def feedback_rows() -> list[dict[str, Any]]:
    return [
        {
            "id": "fb_A",
            "fleet": FLEET,
            "asset_id": "A",
            "prediction_id": "pred_A_30",
            "failure_occurred": True,
            "failure_cycle": 30,
            "created_at": NOW - timedelta(hours=1),
        },
        {
            "id": "fb_D",
            "fleet": FLEET,
            "asset_id": "D",
            "failure_occurred": False,
            "failure_cycle": 30,
            "created_at": NOW - timedelta(hours=1),
        },
    ]


LATE_FEEDBACK = {
    "id": "fb_C",
    "fleet": FLEET,
    "asset_id": "C",
    "failure_occurred": True,
    "failure_cycle": 24,
    "created_at": NOW - timedelta(minutes=5),
}
