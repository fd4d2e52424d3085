"""POST /feedback stores what the operator said (the failure cycle too) and refuses outcomes that
contradict themselves or the prediction they judge, naming the fields."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from prognos.serving.app import create_app
from prognos.storage import repository
from tests.helpers.serving import body_for, open_settings, readings
from tests.helpers.trained import Trained
from tests.storage import prediction

# A prediction made on a timestamped reading: its time is nanoseconds since the epoch.
STAMPED_AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("feedback") / "db.sqlite"
    settings = open_settings(trained, db, compute_process=False)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        stamped = prediction("stamped", id="pred_stamped", created_at=STAMPED_AT)
        stamped["time"] = int(pd.Timestamp(STAMPED_AT).value)
        repository.insert_predictions(runtime.core.db, [stamped])
        yield client


@pytest.fixture(scope="module")
def predicted(client: TestClient, trained: Trained) -> dict[str, Any]:
    """The answer to the last of 20 readings of one asset (its cycle is ``time``)."""
    out: dict[str, Any] = {}
    for row in readings(trained, 1, 20):
        response = client.post("/predict", json=body_for(row))
        assert response.status_code == 200, response.text
        out = response.json()
    return out


def feedback(predicted: dict[str, Any], **outcome: Any) -> dict[str, Any]:
    return {
        "equipment_id": predicted["equipment_id"],
        "prediction_id": predicted["prediction_id"],
        "actual_outcome": {"failure_occurred": True, **outcome},
    }


def labels(client: TestClient) -> pd.DataFrame:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.core.writer.flush(10)
    return repository.feedback_labels(runtime.core.db).set_index("feedback_id")


def test_the_failure_cycle_is_stored(client: TestClient, predicted: dict[str, Any]) -> None:
    body = feedback(predicted, failure_cycle=predicted["time"] + 30, failure_type="blade")
    response = client.post("/feedback", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["prediction_accuracy"]["actual_rul_cycles"] == 30
    row = labels(client).loc[response.json()["feedback_id"]]
    assert row["failure_cycle"] == predicted["time"] + 30
    assert row["prediction_time"] == predicted["time"]
    assert row["failure_type"] == "blade"


def test_feedback_is_stored_under_the_service_fleet(
    client: TestClient, predicted: dict[str, Any]
) -> None:
    """Live monitoring reads feedback per fleet: feedback stored under another fleet is lost."""
    from sqlalchemy import select

    from prognos.storage.models import Feedback

    response = client.post("/feedback", json=feedback(predicted, failure_cycle=predicted["time"]))
    assert response.status_code == 201, response.text
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.core.writer.flush(10)
    with runtime.core.db.engine.connect() as conn:
        fleet = conn.execute(
            select(Feedback.fleet).where(Feedback.id == response.json()["feedback_id"])
        ).scalar_one()
    assert fleet == runtime.core.fleet == runtime.core.model.fleet_name


@pytest.mark.parametrize(
    "given",
    [
        {"failure_cycle": 500},
        {"failure_timestamp": "2026-03-01T12:00:00Z"},
        {"failure_type": "blade"},
        {"failure_cycle": 500, "failure_type": "blade"},
    ],
)
def test_no_failure_with_a_failure_detail_is_refused(
    client: TestClient, predicted: dict[str, Any], given: dict[str, Any]
) -> None:
    body = feedback(predicted, **given)
    body["actual_outcome"]["failure_occurred"] = False
    response = client.post("/feedback", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "actual_outcome"
    assert error["message"].startswith("failure_occurred is false, yet")
    assert all(name in error["message"] for name in given)


def test_no_failure_with_notes_is_recorded(client: TestClient, predicted: dict[str, Any]) -> None:
    body = feedback(predicted, inspection_notes="all blades fine")
    body["actual_outcome"]["failure_occurred"] = False
    response = client.post("/feedback", json=body)
    assert response.status_code == 201, response.text
    row = labels(client).loc[response.json()["feedback_id"]]
    assert not row["failure_occurred"] and pd.isna(row["failure_cycle"])


def test_a_failure_before_the_predicted_cycle_is_refused(
    client: TestClient, predicted: dict[str, Any]
) -> None:
    before = client.post("/feedback", json=feedback(predicted, failure_cycle=predicted["time"] - 1))
    assert before.status_code == 422, before.text
    assert before.json()["errors"][0]["field"] == "actual_outcome.failure_cycle"
    assert f"before cycle {predicted['time']}" in before.json()["detail"]
    same = client.post("/feedback", json=feedback(predicted, failure_cycle=predicted["time"]))
    assert same.status_code == 201, same.text


def test_a_failure_before_the_predicted_timestamp_is_refused(client: TestClient) -> None:
    stamped = {"equipment_id": "stamped", "prediction_id": "pred_stamped"}
    before = client.post(
        "/feedback",
        json={**stamped, "actual_outcome": {"failure_occurred": True,
                                            "failure_timestamp": "2026-03-01T09:59:59Z"}},
    )  # fmt: skip
    assert before.status_code == 422, before.text
    assert before.json()["errors"][0]["field"] == "actual_outcome.failure_timestamp"
    after = client.post(
        "/feedback",
        json={**stamped, "actual_outcome": {"failure_occurred": True, "failure_cycle": 3,
                                            "failure_timestamp": "2026-03-01T11:00:00+01:00"}},
    )  # fmt: skip
    assert after.status_code == 201, after.text
    # A cycle cannot be compared with a timestamped prediction: stored, but no accuracy.
    assert after.json()["prediction_accuracy"] is None
    row = labels(client).loc[after.json()["feedback_id"]]
    assert row["failure_cycle"] == 3
    assert row["failure_time"] == pd.Timestamp("2026-03-01T10:00:00Z")


# ------------------------------------------------------------------------ maintenance events


def stored_event(client: TestClient, feedback_id: str) -> dict[str, Any]:
    from prognos.storage.training import fleet_feedback

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.core.writer.flush(10)
    rows = fleet_feedback(runtime.core.db, runtime.core.fleet).set_index("id")
    return dict(rows.loc[feedback_id])


def test_a_repair_is_stored_with_its_cycle(client: TestClient, predicted: dict[str, Any]) -> None:
    body = feedback(predicted, event="repair", failure_cycle=predicted["time"] + 5)
    body["actual_outcome"]["failure_occurred"] = False
    response = client.post("/feedback", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["prediction_accuracy"] is None  # a repair is no failure
    row = stored_event(client, response.json()["feedback_id"])
    assert row["event"] == "repair" and not row["failure_occurred"]
    assert row["failure_cycle"] == predicted["time"] + 5


def test_events_default_from_failure_occurred(
    client: TestClient, predicted: dict[str, Any]
) -> None:
    failed = client.post("/feedback", json=feedback(predicted, failure_cycle=predicted["time"]))
    fixed = client.post(
        "/feedback",
        json=feedback(predicted, event="replacement", failure_cycle=predicted["time"]),
    )
    body = feedback(predicted)
    body["actual_outcome"]["failure_occurred"] = False
    fine = client.post("/feedback", json=body)
    events = [stored_event(client, r.json()["feedback_id"])["event"] for r in (failed, fixed, fine)]
    assert events == ["failure", "replacement", "inspection"]
    assert stored_event(client, fixed.json()["feedback_id"])["failure_occurred"]


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"failure_occurred": False, "event": "repair"}, "a repair needs failure_cycle or"),
        ({"failure_occurred": False, "event": "failure"}, "event is failure, yet failure_occ"),
        ({"failure_occurred": True, "event": "inspection"}, "event is inspection, yet"),
        ({"failure_occurred": False, "event": "inspection", "failure_type": "x"}, "failure_type"),
        ({"failure_occurred": True, "event": "overhaul"}, "Input should be"),
    ],
)
def test_contradicting_events_are_refused(
    client: TestClient, predicted: dict[str, Any], outcome: dict[str, Any], message: str
) -> None:
    body = {"equipment_id": predicted["equipment_id"], "actual_outcome": outcome}
    response = client.post("/feedback", json=body)
    assert response.status_code == 422, response.text
    assert message in response.text
