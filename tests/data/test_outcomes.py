"""Feedback becomes labels: the event log from feedback rows, lives split at resets, exact labels
on hand-built histories, and refusals that name the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognos.data.event_log import event_id, feedback_rows, read_event_log
from prognos.data.outcomes import Lives, events_from_feedback, life_labels
from prognos.errors import LabelError

NAN = np.nan


def history(**lengths: int) -> pd.DataFrame:
    """Readings at cycles 1..n per asset, shuffled, with a non-default index."""
    rows = [(a, t) for a, n in lengths.items() for t in range(1, n + 1)]
    frame = pd.DataFrame(rows, columns=["asset_id", "time"]).assign(s=1.0)
    frame.index = frame.index + 100
    return frame.sample(frac=1, random_state=0)


def log(*events: tuple[str, float, str]) -> pd.DataFrame:
    return pd.DataFrame(events, columns=["asset_id", "time", "event"])


def of(lives: Lives, life: str) -> pd.DataFrame:
    mine = lives.readings["asset_id"] == life
    return pd.concat([lives.readings[mine], lives.labels[mine]], axis=1)


def test_a_failure_labels_the_readings_before_it_exactly() -> None:
    readings = history(A=8)
    lives = life_labels(readings, log(("A", 6, "failure")), horizon=2, rul_cap=4)
    a = of(lives, "A:0")
    assert a["time"].tolist() == [1, 2, 3, 4, 5, 6]  # 7 and 8 come after the failure: dropped
    assert a["rul"].tolist() == [5, 4, 3, 2, 1, 0]
    assert a["rul_capped"].tolist() == [4, 4, 3, 2, 1, 0]
    assert a["failure_within_h"].tolist() == [0, 0, 0, 1, 1, 1]
    assert a.index.isin(readings.index).all() and lives.labels.index.equals(lives.readings.index)
    assert (lives.groups == "A").all()
    assert lives.counts["rows_failed"] == 6 and lives.counts["rows_after_failure"] == 2
    assert lives.counts["lives_failed"] == 1


def test_a_repair_starts_a_new_life() -> None:
    """Repaired at 4 (that reading is the old life's last), fails at 9, replaced at 10: three
    lives of one asset, the last too short to keep anything."""
    readings = history(A=12)
    events = log(("A", 4, "repair"), ("A", 9, "failure"), ("A", 10, "replacement"))
    lives = life_labels(readings, events, horizon=2, rul_cap=3)
    assert sorted(lives.readings["asset_id"].unique()) == ["A:0", "A:1"]
    assert set(lives.groups) == {"A"}
    second = of(lives, "A:1")
    assert second["time"].tolist() == [5, 6, 7, 8, 9]
    assert second["rul"].tolist() == [4, 3, 2, 1, 0]
    # The first life is followed to its repair at 4: rows 1 (followed 3 >= cap) only.
    first = of(lives, "A:0")
    assert first["time"].tolist() == [1] and np.isnan(first["rul"]).all()
    # The third life (11, 12) is followed 1 cycle at most: censored, nothing kept.
    assert of(lives, "A:2").empty
    assert lives.counts | {"events_unmatched": 0} == {
        "lives_failed": 1,
        "lives_negative": 1,
        "lives_censored": 1,
        "rows_failed": 5,
        "rows_negative": 1,
        "rows_censored": 5,  # 2, 3, 4 of the first life; 11, 12 of the third
        "rows_after_failure": 1,  # 10: failed at 9, replaced at the end of 10
        "events_unmatched": 0,
    }


def test_a_censored_life_keeps_only_its_known_healthy_rows() -> None:
    """Never failed, readings 1..10, cap 4: rows followed >= 4 (t <= 6) have an exact capped
    RUL of 4 and are negatives; the last four are dropped, not guessed."""
    lives = life_labels(history(B=10), log(), horizon=2, rul_cap=4)
    b = of(lives, "B:0")
    assert b["time"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.isnan(b["rul"]).all()
    assert (b["rul_capped"] == 4).all() and (b["failure_within_h"] == 0).all()
    assert lives.counts["rows_negative"] == 6 and lives.counts["rows_censored"] == 4


def test_an_inspection_extends_the_follow_up_past_the_horizon() -> None:
    """Readings end at 5, but an inspection at 12 found no failure: rows up to 12 - cap are
    known healthy. Without it, nothing is followed long enough."""
    readings = history(C=5)
    alone = life_labels(readings, log(), horizon=3, rul_cap=6)
    assert alone.readings.empty and alone.counts["lives_censored"] == 1
    seen = life_labels(readings, log(("C", 12, "inspection")), horizon=3, rul_cap=6)
    assert of(seen, "C:0")["time"].tolist() == [1, 2, 3, 4, 5]
    assert seen.counts["lives_negative"] == 1 and (seen.labels["failure_within_h"] == 0).all()


def test_a_failure_and_a_replacement_at_once_fail_then_start_afresh() -> None:
    readings = history(D=8)
    events = log(("D", 4, "replacement"), ("D", 4, "failure"), ("D", 99, "failure"))
    lives = life_labels(readings, events, horizon=1, rul_cap=50)
    assert of(lives, "D:0")["rul"].tolist() == [3, 2, 1, 0]
    assert of(lives, "D:1")["rul"].tolist() == [94, 93, 92, 91]  # fails long after the data


def test_timestamped_fleets_count_hours() -> None:
    start = pd.Timestamp("2026-01-01T00:00:00")
    readings = pd.DataFrame(
        {"asset_id": "E", "time": start + pd.to_timedelta(range(5), unit="h"), "s": 0.0}
    )
    failure = log(("E", start + pd.Timedelta(hours=3, minutes=30), "failure"))
    failure["time"] = pd.to_datetime(failure["time"]).dt.tz_localize("UTC")  # aware vs naive
    lives = life_labels(readings, failure, horizon=1, rul_cap=10)
    assert lives.labels["rul"].tolist() == [3.5, 2.5, 1.5, 0.5]
    assert lives.labels["failure_within_h"].tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize(
    ("events", "needles"),
    [
        (log(("A", 3, "explosion")), ["unknown event type(s) ['explosion']", "row(s) 0"]),
        (log(("A", 3, "failure"), ("A", NAN, "repair")), ["no time at row(s) 1"]),
        (
            log(("A", 3, "failure"), ("A", 5, "repair"), ("A", 3, "failure")),
            ["the same event twice: failure of asset 'A' at 3", "rows 0, 2"],
        ),
        (log(("A", pd.Timestamp("2026-01-01"), "failure")), ["timestamps", "count cycles"]),
    ],
)
def test_a_hostile_event_log_is_refused_by_name(events: pd.DataFrame, needles: list[str]) -> None:
    with pytest.raises(LabelError) as info:
        life_labels(history(A=4), events, horizon=2, rul_cap=3)
    for needle in needles:
        assert needle in str(info.value)


# ------------------------------------------------------------------------------ from feedback


def feedback(*rows: dict[str, object]) -> pd.DataFrame:
    base = {
        "id": None,
        "asset_id": "A",
        "event": None,
        "failure_occurred": False,
        "failure_time": pd.NaT,
        "failure_cycle": None,
        "prediction_time": None,
    }
    frame = pd.DataFrame([{**base, "id": f"fb_{i}", **row} for i, row in enumerate(rows)])
    frame["failure_time"] = pd.to_datetime(frame["failure_time"], utc=True)
    for column in ("failure_cycle", "prediction_time"):
        frame[column] = frame[column].astype("Int64")
    return frame


def test_feedback_rows_become_an_event_log() -> None:
    found = events_from_feedback(
        feedback(
            {"failure_occurred": True, "failure_cycle": 50},  # an old row: no event
            {"failure_occurred": True, "failure_cycle": 50},  # reported twice
            {"failure_occurred": True, "event": "replacement", "failure_cycle": 50},
            {"event": "repair", "failure_cycle": 80, "asset_id": "B"},
            {"prediction_time": 30, "asset_id": "B"},  # inspected: dated by its prediction
            {"failure_occurred": True},  # a failure without a cycle labels nothing
        ),
        time_kind="cycle",
    )
    assert found.events.to_dict("records") == [
        {"asset_id": "A", "time": 50, "event": "failure"},
        {"asset_id": "A", "time": 50, "event": "replacement"},
        {"asset_id": "B", "time": 30, "event": "inspection"},
        {"asset_id": "B", "time": 80, "event": "repair"},
    ]
    assert (found.rows, found.untimed, found.duplicates) == (6, 1, 2)


def test_timestamped_feedback_uses_the_failure_time() -> None:
    at = pd.Timestamp("2026-02-01T08:00:00Z")
    found = events_from_feedback(
        feedback({"failure_occurred": True, "failure_time": at, "failure_cycle": 9}),
        time_kind="timestamp",
    )
    assert found.events["time"].tolist() == [at]


def test_unknown_stored_events_are_named() -> None:
    with pytest.raises(LabelError, match=r"unknown event type\(s\) \['overhaul'\]: fb_0"):
        events_from_feedback(feedback({"event": "overhaul"}), time_kind="cycle")


# ---------------------------------------------------------------------------- the CSV import


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(text)
    return path


def test_an_event_log_file_is_read_with_its_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path, "asset_id,time,event,notes\nA,10,failure,cracked\n\nA, 12 ,Replacement,\n"
    )
    events = read_event_log(path)
    assert events.index.tolist() == [2, 4]  # line numbers, the blank line skipped
    assert events["time"].dtype == "int64" and events["event"].tolist() == [
        "failure",
        "replacement",
    ]
    assert events["notes"].tolist() == ["cracked", None]
    rows = feedback_rows(events, fleet="pumps", submitted_by="me")
    assert [r["failure_occurred"] for r in rows] == [True, False]
    assert rows[1]["failure_cycle"] == 12 and rows[1]["event"] == "replacement"
    assert (
        rows[0]["id"] == event_id("pumps", "A", 10, "failure") != event_id("x", "A", 10, "failure")
    )


def test_timestamps_in_an_event_log_are_utc(tmp_path: Path) -> None:
    path = write(tmp_path, "asset_id,time,event\nA,2026-03-01T10:00:00+01:00,repair\n")
    [row] = feedback_rows(read_event_log(path), fleet="f", submitted_by="me")
    assert row["failure_time"] == pd.Timestamp("2026-03-01T09:00:00Z").to_pydatetime()
    assert row["failure_cycle"] is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("asset_id,time\nA,1\n", "missing ['event']"),
        ("asset_id,time,event,colour\nA,1,failure,red\n", "unexpected ['colour']"),
        ("asset_id,time,event\nA,1,failure\nA,,repair\n", "no time at line(s) 3"),
        ("asset_id,time,event\nA,1,failure\nA,soon,repair\n", "line(s) 3 is neither"),
        ("asset_id,time,event\nA,1.5,failure\n", "cycle at line(s) 2 is not a whole number"),
        ("asset_id,time,event\nA,1,failure\nA,2026-01-01,repair\n", "times mix cycle numbers"),
        ("asset_id,time,event\nA,5,failure\nA,5.0,failure\n", "(lines 2, 3)"),
    ],
)
def test_a_bad_event_log_file_names_the_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(LabelError) as info:
        read_event_log(write(tmp_path, text))
    assert needle in str(info.value)


def test_a_timestamped_inspection_is_dated_by_its_prediction() -> None:
    at = pd.Timestamp("2026-01-01T00:00:00.123456789Z")
    found = events_from_feedback(feedback({"prediction_time": at.value}), time_kind="timestamp")
    assert found.events["time"].tolist() == [at] and found.untimed == 0
