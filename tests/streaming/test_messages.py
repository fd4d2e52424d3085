"""A message's verdict: its reading, or the dead-letter reason, judged alone or in a batch."""

from __future__ import annotations

import json

import pytest

from prognos.ingestion.readings import ReadingIn
from prognos.ingestion.scoring import ServedModel
from prognos.streaming.messages import (
    Message,
    Rejection,
    asset_of,
    dead_letter_row,
    decode,
    judge,
    subscription,
    topic_for,
)

MODEL = ServedModel(
    name="m", version="1", fleet_name="f", sensor_names=("sensor_1", "sensor_2"),
    setting_names=("setting_1",), threshold=0.5, coverage=0.9, horizon=30,
)  # fmt: skip


def body(asset: str = "a1", cycle: int = 1, **changes: object) -> dict[str, object]:
    reading: dict[str, object] = {
        "equipment_id": asset,
        "cycle": cycle,
        "sensor_readings": {"sensor_1": 1.5, "sensor_2": 2.5},
        "operational_settings": {"setting_1": 0.1},
    }
    reading.update(changes)
    return reading


def message(payload: bytes | dict[str, object], asset: str = "a1") -> Message:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(topic_for("f", asset), raw, 1.0)


def test_topics() -> None:
    assert topic_for("f", "a1") == "prognos/f/a1/readings"
    assert subscription("f") == "prognos/f/+/readings"
    assert subscription("f", "g") == "$share/g/prognos/f/+/readings"
    assert asset_of("prognos/f/a1/readings") == "a1"
    assert asset_of("prognos/f/a1/other") is None and asset_of("x/f/a1/readings") is None


BAD: list[tuple[bytes | dict[str, object], str, str]] = [
    (b"{not json", "not_json", "not JSON"),
    (b"\xff\xfe", "not_json", "not JSON"),
    (body(cycle=-1), "schema", "cycle"),
    ({"equipment_id": "a1", "cycle": 1}, "schema", "sensor_readings: Field required"),
    (body(sensor_readings={"sensor_1": "hot"}), "schema", "sensor_readings.sensor_1"),
    (body(extra=1), "schema", "extra"),
    (b'{"equipment_id": "a1", "cycle": 1, "sensor_readings": {"sensor_1": NaN}}', "schema",
     "finite"),
    (body(sensor_readings={"sensor_9": 1.0}), "unknown_channel", "sensor_9"),
    (body(asset="a2"), "topic_mismatch", "'a2'"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "reason", "says"), BAD)
def test_each_bad_message_gets_its_reason(
    payload: bytes | dict[str, object], reason: str, says: str
) -> None:
    verdict = judge(message(payload), MODEL)
    assert isinstance(verdict, Rejection), verdict
    assert verdict.reason == reason and says in verdict.detail, verdict


def test_a_batch_gets_the_verdicts_each_message_gets_alone() -> None:
    good = [message(body(cycle=c)) for c in range(1, 4)]
    bad = [message(p) for p, _, _ in BAD]
    batch = [good[0], *bad, *good[1:]]
    decoded = decode(batch, MODEL)
    assert [m for m, _ in decoded.readings] == good
    assert [(m, r) for m, r in decoded.rejected] == [(m, judge(m, MODEL)) for m in bad]
    clean = decode(good, MODEL)  # the one-pass path
    assert [r for _, r in clean.readings] == [ReadingIn.model_validate(body(cycle=c))
                                              for c in range(1, 4)]  # fmt: skip
    assert not clean.rejected


def test_two_values_in_one_payload_do_not_shift_the_batch() -> None:
    two = message(json.dumps(body(cycle=1)).encode() + b"," + json.dumps(body(cycle=2)).encode())
    decoded = decode([two, message(body(cycle=3))], MODEL)
    assert [r.reason for _, r in decoded.rejected] == ["not_json"]
    assert [r.cycle for _, r in decoded.readings] == [3]


def test_dead_letter_rows_keep_the_payload_and_are_idempotent() -> None:
    bad = message(b"{not json")
    row = dead_letter_row(bad, Rejection("not_json", "x"), fleet="f", source="mqtt")
    assert row["payload"] == b"{not json" and row["topic"] == bad.topic and row["asset_id"] == "a1"
    again = dead_letter_row(message(b"{not json"), Rejection("not_json", "x"), fleet="f",
                            source="mqtt")  # fmt: skip
    other = dead_letter_row(message(b"{not json!"), Rejection("not_json", "x"), fleet="f",
                            source="mqtt")  # fmt: skip
    assert row["id"] == again["id"] != other["id"]
