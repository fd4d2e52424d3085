"""Hostile input never gets a 5xx: non-finite and huge numbers, lone surrogates, NUL, far-off
years, ids that could not be read back, wrong types, in every field of every endpoint; each
refusal is a JSON 4xx that names the field.

Bodies are built as raw JSON text, so that ``NaN``, ``1e309`` and ``"\\ud800"`` reach the server
as a client could send them (``json.dumps`` refuses or rewrites them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prognos.serving.app import create_app
from tests.helpers.serving import body_for, open_settings, readings
from tests.helpers.trained import Trained

JSON = {"Content-Type": "application/json"}
LIMIT = 64_000  # max_body_bytes of the service under test
HOLE = "__HOSTILE__"

# Raw JSON tokens no well-behaved client sends.
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", str(2**63), str(10**30), "-1"]
STRINGS = [
    r'"\ud800"',
    r'"a\u0000b"',
    '""',
    '"a/b"',
    r'"\n"',
    r'"a\u0007"',
    '"../x"',
    json.dumps("x" * 300),
    '"0001-01-01T00:00:00Z"',
    '"3000-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59Z"',
    '"9999-12-31T23:59:59-23:59"',
    '"2026-01-01T00:00:00"',
]
OTHERS = ["true", "null", "[]", "{}", "[1, 2]", '{"a": NaN}', "0.5", "1e20"]
TOKENS = NUMBERS + STRINGS + OTHERS


def _number(x: float) -> str:
    """A float as JSON text, with the spellings Python's parser (and so FastAPI) accepts."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


# Fixed tokens, and generated ones: any int, any float, any text (surrogates and control
# characters included, as JSON escapes), any datetime with a time zone.
tokens = (
    st.sampled_from(TOKENS)
    | st.integers().map(str)
    | st.floats().map(_number)
    | st.text(st.characters(exclude_categories=()), max_size=12).map(json.dumps)
    | st.datetimes(timezones=st.timezones()).map(lambda d: json.dumps(d.isoformat()))
)
KEYS = [r'"\ud800"', r'"a\u0000"', '""', json.dumps("k" * 300)]


@pytest.fixture(scope="module")
def client(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("hostile") / "db.sqlite"
    with TestClient(create_app(open_settings(trained, db, max_body_bytes=LIMIT))) as client:
        for row in readings(trained, 0, 5):
            assert client.post("/predict", json=body_for(row)).status_code == 200
        yield client


@pytest.fixture(scope="module")
def reading(trained: Trained) -> dict[str, Any]:
    return body_for(readings(trained, 0, 6)[-1])


@pytest.fixture(scope="module")
def prediction_id(client: TestClient, reading: dict[str, Any]) -> str:
    return str(client.post("/predict", json=reading).json()["prediction_id"])


def raw(body: Any, token: str) -> str:
    """``body`` as JSON with the placeholder (a value or a key) replaced by a raw token."""
    return json.dumps(body).replace(json.dumps(HOLE), token)


def post(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode("utf-8", "surrogatepass"), headers=JSON)


def assert_refused_by_name(response: Any, name: str) -> None:
    """No 5xx; a refusal is JSON that says why: a validation error names the field, a reading
    refused later (unknown or missing channel, out of order) says so, per item from /readings."""
    assert response.status_code < 500, response.text
    body = response.json()  # every answer is JSON
    if response.status_code < 400:
        return
    if "results" in body:  # /readings: every item rejected, each with its reason
        assert all(r["message"] for r in body["results"]), body
    elif body.get("error") == "RequestValidationError":
        assert response.status_code == 422
        named = [e for e in body["errors"] if name in e["field"] + e["message"] or name == e["in"]]
        assert named, (name, body)
    else:
        assert body["error"] and body["detail"], body


# ------------------------------------------------------------------------- the cases of issue 10


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with ``value`` at the dotted ``path``."""
    body = json.loads(json.dumps(body))
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node[part]
    node[leaf] = value
    return body


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309"])
@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ("/predict", "sensor_readings.sensor_2"),
        ("/predict", "operational_settings.setting_1"),
        ("/predict", "cycle"),
        ("/readings", "sensor_readings.sensor_2"),
        ("/batch-predict", "sensor_readings.sensor_2"),
        ("/feedback", "actual_outcome.failure_cycle"),
    ],
)
def test_non_finite_numbers_get_422_naming_the_field(
    client: TestClient, reading: dict[str, Any], endpoint: str, field: str, token: str
) -> None:
    if endpoint == "/feedback":
        body: dict[str, Any] = {
            "equipment_id": reading["equipment_id"],
            "actual_outcome": {"failure_occurred": True, "failure_cycle": HOLE},
        }
        expected = field
    elif endpoint == "/batch-predict":
        body = {"readings": [reading, _with(reading, field, HOLE)]}
        expected = f"readings[1].{field}"
    else:
        body = _with(reading, field, HOLE)
        expected = field
    response = post(client, endpoint, raw(body, token))
    assert response.status_code == 422, response.text
    [error] = [e for e in response.json()["errors"] if e["field"].endswith(expected)]
    assert error["message"] == "Input should be a finite number"


@pytest.mark.parametrize(
    ("field", "token", "problem"),
    [
        ("equipment_id", r'"engine\ud800"', "unicode"),
        ("equipment_id", r'"engine\u0000"', "ids are letters"),
        ("equipment_id", '"a/b"', "ids are letters"),
        ("equipment_id", '"-a"', "ids are letters"),
        ("equipment_id", json.dumps("a" * 129), "at most 128"),
        ("cycle", str(2**63), "less than or equal to 9007199254740992"),
        ("cycle", str(10**30), "less than or equal to 9007199254740992"),
        ("cycle", "-1", "greater than or equal to 0"),
    ],
)
def test_values_storage_cannot_hold_get_422(
    client: TestClient, reading: dict[str, Any], field: str, token: str, problem: str
) -> None:
    response = post(client, "/predict", raw(_with(reading, field, HOLE), token))
    assert response.status_code == 422, response.text
    [error] = [e for e in response.json()["errors"] if e["field"] == field]
    assert problem in error["message"], error


@pytest.mark.parametrize(
    "stamp",
    ["3000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2262-05-01T00:00Z"],
)
def test_timestamps_out_of_range_get_422(
    client: TestClient, reading: dict[str, Any], stamp: str
) -> None:
    body = {k: v for k, v in reading.items() if k != "cycle"} | {"timestamp": stamp}
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "timestamp"
    assert "1971-01-01 up to 2200-01-01" in response.json()["detail"]


@pytest.mark.parametrize("key", [r'"\ud800"', r'"sensor\u0000"'])
def test_channel_names_storage_cannot_hold_get_422(
    client: TestClient, reading: dict[str, Any], key: str
) -> None:
    body = _with(reading, "sensor_readings", {**reading["sensor_readings"], HOLE: 1.0})
    response = post(client, "/predict", raw(body, key))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"].startswith("sensor_readings[")


def test_ids_are_checked_wherever_they_come_in(
    client: TestClient, reading: dict[str, Any], prediction_id: str
) -> None:
    """An id that ``GET /assets/{id}`` could not serve is refused everywhere, the path too."""
    for endpoint, body, field in [
        ("/batch-predict", {"equipment_ids": ["engine_1", "a b"]}, "equipment_ids[1]"),
        ("/feedback", {"equipment_id": "a\x00", "actual_outcome": {"failure_occurred": False}},
         "equipment_id"),
        ("/feedback", {"equipment_id": reading["equipment_id"], "prediction_id": "p/x",
                       "actual_outcome": {"failure_occurred": False}}, "prediction_id"),
    ]:  # fmt: skip
        response = client.post(endpoint, json=body)
        assert response.status_code == 422, (endpoint, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], response.text
    for bad in ["%00", "-a", "a%20b", "x" * 129]:
        response = client.get(f"/assets/{bad}")
        assert response.status_code == 422, (bad, response.text)
        [error] = response.json()["errors"]
        assert (error["field"], error["in"]) == ("asset_id", "path")
    assert client.get(f"/assets/{reading['equipment_id']}").status_code == 200
    assert client.get(f"/explain/{prediction_id}").status_code == 200


def test_text_with_nul_gets_422(client: TestClient, reading: dict[str, Any]) -> None:
    outcome = {"failure_occurred": True, "failure_type": "bla\x00de", "inspection_notes": "\x00"}
    body = {"equipment_id": reading["equipment_id"], "actual_outcome": outcome}
    response = client.post("/feedback", json=body)
    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"actual_outcome.failure_type", "actual_outcome.inspection_notes"}


def test_readings_errors_name_the_reading_and_field(
    client: TestClient, reading: dict[str, Any]
) -> None:
    bad = _with(reading, "sensor_readings.sensor_2", HOLE)
    for body, field in [
        ({"readings": [reading, reading, reading, bad]}, "readings[3].sensor_readings.sensor_2"),
        (bad, "sensor_readings.sensor_2"),
    ]:
        response = post(client, "/readings", raw(body, "NaN"))
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field]


def test_a_chunked_body_over_the_limit_gets_413(client: TestClient) -> None:
    """No Content-Length to refuse up front: the body is counted as it arrives, and the client
    gets 413 with the JSON error, not FastAPI's 400 for a body it could not read."""

    def chunks() -> Iterator[bytes]:
        yield b'{"readings": ['
        for _ in range(LIMIT // 4096 + 2):
            yield b" " * 4096
        yield b"]}"

    response = client.post("/readings", content=chunks(), headers=JSON)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "PayloadTooLargeError"
    assert f"limit of {LIMIT} bytes" in response.json()["detail"]
    assert client.get("/health").status_code == 200  # the service is fine afterwards


# ------------------------------------------------------------------------- the property


def _targets(reading: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(endpoint, body with a placeholder, the name a refusal must mention) for every field."""
    sensor = next(iter(reading["sensor_readings"]))
    setting = next(iter(reading["operational_settings"]))
    stamped = {k: v for k, v in reading.items() if k != "cycle"}
    one: list[tuple[Any, str]] = [
        (_with(reading, "equipment_id", HOLE), "equipment_id"),
        (_with(reading, "cycle", HOLE), "cycle"),
        (_with(stamped, "timestamp", HOLE), "timestamp"),
        (_with(reading, f"sensor_readings.{sensor}", HOLE), sensor),
        (_with(reading, f"operational_settings.{setting}", HOLE), setting),
        (_with(reading, "sensor_readings", HOLE), "sensor_readings"),
        (_with(reading, "operational_settings", HOLE), "operational_settings"),
        (HOLE, "body"),
    ]
    targets = [("/predict", body, name) for body, name in one]
    targets += [("/readings", body, name) for body, name in one]
    targets += [("/readings", {"readings": [reading, body]}, name) for body, name in one[:-1]]
    targets += [("/readings", {"readings": HOLE}, "readings")]
    targets += [("/batch-predict", {"readings": [body]}, name) for body, name in one[:-1]]
    asset = reading["equipment_id"]
    targets += [
        ("/batch-predict", {"equipment_ids": [asset, HOLE]}, "equipment_ids"),
        ("/batch-predict", {"equipment_ids": HOLE}, "equipment_ids"),
        ("/batch-predict", {"equipment_ids": [asset], "explain": HOLE}, "explain"),
    ]
    outcome = {"failure_occurred": True, "failure_cycle": reading["cycle"] + 5}
    feedback = {"equipment_id": asset, "actual_outcome": outcome}
    targets += [
        ("/feedback", _with(feedback, "equipment_id", HOLE), "equipment_id"),
        ("/feedback", {**feedback, "prediction_id": HOLE}, "prediction_id"),
        ("/feedback", _with(feedback, "actual_outcome", HOLE), "actual_outcome"),
    ]
    for field in ["failure_occurred", "failure_cycle", "failure_timestamp", "failure_type",
                  "inspection_notes"]:  # fmt: skip
        targets.append(("/feedback", _with(feedback, f"actual_outcome.{field}", HOLE), field))
    return targets


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_hostile_value_gets_a_server_error(
    client: TestClient, reading: dict[str, Any], data: st.DataObject
) -> None:
    endpoint, body, name = data.draw(st.sampled_from(_targets(reading)), label="target")
    token = data.draw(tokens, label="token")
    assert_refused_by_name(post(client, endpoint, raw(body, token)), name)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(KEYS), endpoint=st.sampled_from(["/predict", "/readings"]))
def test_no_hostile_channel_name_gets_a_server_error(
    client: TestClient, reading: dict[str, Any], key: str, endpoint: str
) -> None:
    body = _with(reading, "sensor_readings", {**reading["sensor_readings"], HOLE: 1.0})
    response = post(client, endpoint, raw(body, key))
    assert response.status_code == 422, response.text
    assert "sensor_readings" in response.text or "unknown channels" in response.text


PATH_IDS = ["a%2Fb", "%00", "%ED%A0%80", "%FF", "x" * 300, "..", "a%0Ab", "%20", "NaN", "1e309"]


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    prefix=st.sampled_from(["/assets/", "/explain/"]),
    ident=st.sampled_from(PATH_IDS) | st.text(max_size=20).map(lambda s: quote(s, safe="")),
)
def test_no_hostile_path_gets_a_server_error(client: TestClient, prefix: str, ident: str) -> None:
    response = client.get(prefix + ident)
    assert response.status_code < 500, response.text
    response.json()
