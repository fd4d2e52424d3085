"""plan_from_store: each asset's latest served prediction of the named model, aged to now."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from prognos.errors import NotFoundError, PlanError
from prognos.planning import Costs, plan_from_store
from prognos.planning.service import latest_predictions_of
from prognos.storage import repository
from prognos.storage.database import Database

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    database.upgrade()
    yield database
    database.dispose()


def _prediction(asset: str, time: int, rul: float, **changes: Any) -> dict[str, Any]:
    row = {
        "asset_id": asset,
        "time": time,
        "created_at": NOW,
        "model_name": "pumps",
        "model_version": "1",
        "failure_probability": 0.9 if rul < 10 else 0.01,
        "risk_level": "high" if rul < 10 else "low",
        "rul": rul,
        "rul_lower": max(rul - 3.0, 0.0),
        "rul_upper": rul + 3.0,
        "should_inspect": rul < 10,
    }
    row.update(changes)
    return row


def test_latest_served_prediction_of_the_model_per_asset(db: Database) -> None:
    repository.insert_predictions(
        db,
        [
            _prediction("A", 1, 50.0),
            _prediction("A", 2, 4.0),  # A's latest
            _prediction("A", 3, 90.0, shadow=True),  # a challenger's shadow: not served
            _prediction("B", 5, 30.0, rul_upper=None),  # open above
            _prediction("C", 9, 1.0, model_name="other"),  # another model's asset
        ],
    )
    rows = latest_predictions_of(db, "pumps")
    assert [(r["asset_id"], r["time"]) for r in rows] == [("A", 2), ("B", 5)]
    result = plan_from_store(db, "pumps", crews=1, days=10, as_of=NOW)
    assert result.plan.n_assets == 2
    assert [v.asset_id for v in result.plan.visits] == ["A"]  # fails within days; B does not
    assert result.plan.visits[0].day == 1
    assert result.plan.costs == Costs.default()


def test_old_predictions_are_aged_to_now(db: Database) -> None:
    repository.insert_predictions(
        db, [_prediction("A", 1, 20.0, created_at=NOW - timedelta(days=14))]
    )
    fresh = plan_from_store(db, "pumps", crews=1, days=7, as_of=NOW - timedelta(days=14))
    aged = plan_from_store(db, "pumps", crews=1, days=7, as_of=NOW)
    assert fresh.plan.visits == ()  # 20 days left: not within a week
    assert [v.day for v in aged.plan.visits] == [1]  # 6 days left now
    half = plan_from_store(db, "pumps", crews=1, days=7, as_of=NOW, time_per_day=0.5)
    assert half.plan.visits == ()  # half a cycle a day: 13 cycles left = 26 days


def test_nothing_to_plan_and_bad_capacity_are_named(db: Database) -> None:
    with pytest.raises(NotFoundError, match="no stored predictions of model 'pumps'"):
        plan_from_store(db, "pumps", crews=1, days=5)
    with pytest.raises(PlanError, match="crews"):
        plan_from_store(db, "pumps", crews=0, days=5)
