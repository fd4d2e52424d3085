"""Batch validation: every row ends valid or quarantined with a reason, nothing dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognos.data.validation import ValidationResult, readings_schema, validate_readings
from prognos.errors import SchemaError
from prognos.fleet import CMAPSS_COLUMNS, FleetSpec, SensorSpec, cmapss_spec


@pytest.fixture
def spec() -> FleetSpec:
    return FleetSpec(
        name="pumps",
        settings=[SensorSpec(name="load", min=0.0, max=100.0)],
        sensors=[
            SensorSpec(name="temp", min=0.0, max=500.0),
            SensorSpec(name="pressure", min=0.0, max=50.0),
            SensorSpec(name="vibration"),  # no bounds: only non-finite values are out of range
        ],
    )


def clean(n_assets: int = 3, n_cycles: int = 30, seed: int = 0) -> pd.DataFrame:
    """Noisy, in-range, in-order readings: valid as a whole, no constant or stuck channel."""
    rng = np.random.default_rng(seed)
    n = n_assets * n_cycles
    return pd.DataFrame(
        {
            "asset_id": np.repeat(np.arange(1, n_assets + 1), n_cycles),
            "time": np.tile(np.arange(1, n_cycles + 1), n_assets),
            "load": rng.uniform(10, 90, n),
            "temp": rng.uniform(300, 400, n),
            "pressure": rng.uniform(10, 20, n),
            "vibration": rng.normal(0, 1, n),
        }
    )


def check_accounting(result: ValidationResult, readings: pd.DataFrame) -> None:
    report = result.report
    assert len(result.valid) + len(result.quarantine) == len(readings) == report.total_rows
    assert report.valid_rows == len(result.valid)
    assert report.quarantined_rows == len(result.quarantine)
    kept = set(result.valid.index)
    assert not kept & set(result.quarantine["row"])
    assert list(result.valid.index) == [i for i in readings.index if i in kept]


def reason_of(result: ValidationResult, row: object) -> str:
    q = result.quarantine
    return str(q.loc[q["row"] == row, "reason"].item())


def test_clean_batch_is_all_valid_with_proper_dtypes(spec: FleetSpec) -> None:
    readings = clean()
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert result.quarantine.empty
    assert result.report.by_rule == []
    assert result.report.warnings == []
    assert result.valid["asset_id"].dtype == np.int64
    assert result.valid["time"].dtype == np.int64
    assert (result.valid[["load", "temp", "pressure", "vibration"]].dtypes == np.float64).all()
    pd.testing.assert_frame_equal(result.valid, readings, check_dtype=False)


def test_non_numeric_string_quarantines_its_row_and_the_column_is_coerced(spec: FleetSpec) -> None:
    readings = clean().astype({"temp": object})
    readings.loc[4, "temp"] = "hot"
    readings.loc[5, "temp"] = "351.5"  # a number written as text is fine
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert list(result.quarantine["row"]) == [4]
    assert reason_of(result, 4) == "type:temp"
    assert result.quarantine["temp"].item() == "hot"
    assert result.valid["temp"].dtype == np.float64
    assert result.valid.loc[5, "temp"] == 351.5
    (count,) = result.report.by_rule
    assert (count.rule, count.rows) == ("type", 1)
    assert "temp='hot'" in count.example and "asset 1 time 5" in count.example


def test_time_that_is_not_a_cycle_is_a_type_error(spec: FleetSpec) -> None:
    readings = clean().astype({"time": object})
    readings.loc[2, "time"] = "three"
    readings.loc[7, "time"] = np.inf
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert reason_of(result, 2) == "type:time"
    assert reason_of(result, 7) == "type:time"
    assert result.valid["time"].dtype == np.int64


def test_missing_values_in_keys_settings_and_sensors(spec: FleetSpec) -> None:
    readings = clean().astype({"asset_id": object})
    readings.loc[1, "pressure"] = np.nan
    readings.loc[2, "asset_id"] = None
    readings.loc[3, "time"] = np.nan
    readings.loc[4, "load"] = np.nan
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert [reason_of(result, i) for i in (1, 2, 3, 4)] == [
        "missing:pressure",
        "missing:asset_id",
        "missing:time",
        "missing:load",
    ]
    assert result.report.rule_rows("missing") == 4
    # NaN turned the int columns into floats; valid rows get their ints back.
    assert result.valid["asset_id"].dtype == np.int64
    assert result.valid["time"].dtype == np.int64


def test_blank_and_null_spelling_strings_are_missing_not_type(spec: FleetSpec) -> None:
    readings = clean().astype({"temp": object})
    readings.loc[1, "temp"] = "  "
    readings.loc[2, "temp"] = "NaN"
    result = validate_readings(readings, spec)
    assert reason_of(result, 1) == reason_of(result, 2) == "missing:temp"


def test_duplicate_key_keeps_the_first_and_says_exact_or_conflicting(spec: FleetSpec) -> None:
    base = clean()
    exact = base.iloc[[3]].rename(index={3: 100})
    conflicting = base.iloc[[5]].assign(temp=333.0).rename(index={5: 101})
    # Each repeat right after its original, so time does not go back.
    readings = pd.concat([base.iloc[:4], exact, base.iloc[4:6], conflicting, base.iloc[6:]])
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert list(result.quarantine["row"]) == [100, 101]
    assert reason_of(result, 100) == "duplicate:exact"
    assert reason_of(result, 101) == "duplicate:conflicting"
    assert {3, 5} <= set(result.valid.index)
    example = result.report.by_rule[0].example
    assert result.report.rule_rows("duplicate") == 2
    assert "exact duplicate of row 3" in example


def test_conflicting_duplicate_example_names_the_differing_sensor(spec: FleetSpec) -> None:
    base = clean()
    readings = pd.concat([base.iloc[:6], base.iloc[[5]].assign(temp=333.0), base.iloc[6:]])
    readings = readings.reset_index(drop=True)
    example = validate_readings(readings, spec).report.by_rule[0].example
    assert "conflicting duplicate of row 5" in example and "temp 333" in example


def test_time_going_back_quarantines_the_late_row_only(spec: FleetSpec) -> None:
    readings = clean(n_assets=2, n_cycles=6)
    readings["time"] = [1, 2, 3, 5, 4, 6, 1, 2, 3, 4, 5, 6]
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert list(result.quarantine["row"]) == [4]
    assert reason_of(result, 4) == "out_of_order:time"
    assert list(result.valid.loc[result.valid["asset_id"] == 1, "time"]) == [1, 2, 3, 5, 6]
    assert "after time 5 (row 3)" in result.report.by_rule[0].example


def test_interleaved_assets_are_not_out_of_order(spec: FleetSpec) -> None:
    readings = clean(n_assets=3, n_cycles=10).sort_values(["time", "asset_id"])
    result = validate_readings(readings, spec)
    assert result.quarantine.empty
    assert list(result.valid.index) == list(readings.index)


def test_out_of_range_above_max_and_non_finite(spec: FleetSpec) -> None:
    readings = clean()
    readings.loc[1, "temp"] = 9999.0
    readings.loc[2, "pressure"] = -np.inf
    readings.loc[3, "vibration"] = np.inf  # unbounded channel, still not a reading
    readings.loc[4, "load"] = -1.0
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    assert [reason_of(result, i) for i in (1, 2, 3, 4)] == [
        "out_of_range:temp",
        "out_of_range:pressure",
        "out_of_range:vibration",
        "out_of_range:load",
    ]
    assert result.report.by_rule[0].example == ("asset 1 time 2 (row 1): temp=9999 above max 500")


def test_missing_column_raises_schema_error_naming_it(spec: FleetSpec) -> None:
    with pytest.raises(SchemaError, match="pressure"):
        validate_readings(clean().drop(columns=["pressure"]), spec)


def test_extra_columns_are_kept_unvalidated_and_warned(spec: FleetSpec) -> None:
    readings = clean().assign(operator=["ann", None, "bob"] * 30)
    result = validate_readings(readings, spec)
    assert result.quarantine.empty
    assert list(result.valid.columns) == list(readings.columns)
    assert result.valid["operator"].tolist() == readings["operator"].tolist()
    assert any("operator" in w for w in result.report.warnings)


def test_dirty_batch_accounts_for_every_row(spec: FleetSpec) -> None:
    base = clean(n_assets=4, n_cycles=25, seed=1)
    readings = pd.concat([base, base.iloc[[10, 11]]]).astype({"temp": object})
    readings.index = [f"r{i}" for i in range(len(readings))]  # any index survives
    readings.loc["r3", "temp"] = "n/a?"  # type
    readings.loc["r30", "pressure"] = np.nan  # missing
    readings.loc["r31", ["pressure", "load"]] = [np.nan, 150.0]  # missing + out_of_range
    readings.loc["r40", "time"] = 2  # asset 2 goes back to time 2: duplicate + out_of_order
    readings.loc["r60", "temp"] = 1e6  # out_of_range
    readings.loc["r61", "vibration"] = -np.inf  # out_of_range
    # r100, r101 repeat r10, r11 (asset 1, times 11 and 12) after asset 1 reached time 25:
    # duplicate (r100 conflicting, r101 exact) and out_of_order.
    readings.loc["r100", "temp"] = 301.0
    result = validate_readings(readings, spec)
    check_accounting(result, readings)
    report = result.report
    assert {c.rule: c.rows for c in report.by_rule} == {
        "type": 1,
        "missing": 2,
        "duplicate": 3,
        "out_of_order": 3,
        "out_of_range": 3,
    }
    assert report.quarantined_rows == 8
    assert reason_of(result, "r31") == "missing:pressure;out_of_range:load"
    assert reason_of(result, "r40") == "duplicate:conflicting;out_of_order:time"
    assert reason_of(result, "r100") == "duplicate:conflicting;out_of_order:time"
    assert reason_of(result, "r101") == "duplicate:exact;out_of_order:time"
    assert reason_of(result, "r3") == "type:temp"
    assert reason_of(result, "r61") == "out_of_range:vibration"
    assert result.quarantine.loc["r3", "temp"] == "n/a?"  # raw value kept
    # Valid rows are the input rows, unchanged, in input order.
    kept = readings.loc[result.valid.index]
    pd.testing.assert_frame_equal(
        result.valid, kept.astype({"temp": np.float64}), check_dtype=False
    )
    assert "8 quarantined" in report.summary() and "out_of_order: 3 rows" in report.summary()


def test_key_rules_compare_with_accepted_rows_only(spec: FleetSpec) -> None:
    """Like the online store: a resend of a rejected reading is not a duplicate."""
    base = clean(n_assets=1, n_cycles=5)
    bad = base.iloc[[2]].assign(temp=9999.0)
    readings = pd.concat([base.drop(index=[2, 3, 4]), bad, base.iloc[[2, 3, 4]]])
    readings = readings.reset_index(drop=True)
    result = validate_readings(readings, spec)
    assert list(result.quarantine["row"]) == [2]
    assert reason_of(result, 2) == "out_of_range:temp"
    assert list(result.valid["time"]) == [1, 2, 3, 4, 5]


def test_text_ids_and_timestamps(spec: FleetSpec) -> None:
    ts_spec = spec.model_copy(update={"time_kind": "timestamp"})
    readings = clean(n_assets=2, n_cycles=5)
    readings["asset_id"] = readings["asset_id"].map({1: "pump-a", 2: "pump-b"})
    stamps = pd.date_range("2024-01-01", periods=5, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    readings["time"] = list(stamps) * 2
    readings.loc[7, "time"] = "yesterday"
    readings.loc[8, "time"] = readings.loc[5, "time"]  # backwards and a duplicate
    result = validate_readings(readings, ts_spec)
    check_accounting(result, readings)
    assert reason_of(result, 7) == "type:time"
    assert reason_of(result, 8) == "duplicate:conflicting;out_of_order:time"
    assert pd.api.types.is_datetime64_any_dtype(result.valid["time"])
    assert result.valid["asset_id"].tolist()[:2] == ["pump-a", "pump-a"]
    assert "is not a datetime" in result.report.by_rule[0].example


def test_bare_numbers_are_not_timestamps(spec: FleetSpec) -> None:
    ts_spec = spec.model_copy(update={"time_kind": "timestamp"})
    result = validate_readings(clean(n_assets=1, n_cycles=3), ts_spec)
    assert result.report.rule_rows("type") == 3 and result.valid.empty


def test_all_text_input_is_coerced(spec: FleetSpec) -> None:
    readings = clean().astype(str)
    result = validate_readings(readings, spec)
    assert result.quarantine.empty
    assert result.valid["time"].dtype == np.int64
    assert result.valid["load"].dtype == np.float64
    assert result.valid["asset_id"].tolist()[0] == "1"  # ids stay as given


def test_empty_batch(spec: FleetSpec) -> None:
    result = validate_readings(clean().iloc[:0], spec)
    assert result.report.total_rows == 0 and result.valid.empty and result.quarantine.empty


def test_constant_sensor_is_reported(spec: FleetSpec) -> None:
    readings = clean().assign(pressure=14.7)
    result = validate_readings(readings, spec)
    assert result.quarantine.empty
    assert result.report.constant_sensors == ["pressure"]
    assert any("pressure is constant (14.7)" in w for w in result.report.warnings)


def test_stuck_sensor_names_asset_sensor_and_span(spec: FleetSpec) -> None:
    readings = clean(n_assets=4, n_cycles=60)
    stuck = (readings["asset_id"] == 3) & readings["time"].between(11, 35)
    readings.loc[stuck, "temp"] = 351.25
    result = validate_readings(readings, spec)
    assert result.quarantine.empty and result.report.constant_sensors == []
    (warning,) = result.report.warnings
    assert "temp looks stuck" in warning
    assert "asset 3 time 11..35 (25 readings at 351.25)" in warning
    assert validate_readings(readings, spec, stuck_run=30).report.warnings == []


def test_quantised_sensor_is_not_called_stuck(spec: FleetSpec) -> None:
    """A channel that repeats most of the time anyway (two levels) is not evidence of a fault."""
    readings = clean(n_assets=4, n_cycles=200)
    rng = np.random.default_rng(3)
    readings["pressure"] = np.where(rng.random(len(readings)) < 0.97, 14.7, 14.8)
    assert validate_readings(readings, spec).report.warnings == []


def test_schema_is_built_from_the_spec(spec: FleetSpec) -> None:
    schema = readings_schema(spec)
    assert set(schema.columns) == set(spec.columns)
    assert not any(column.nullable for column in schema.columns.values())


def test_clean_cmapss_fd001(cmapss_dir: Path) -> None:
    cmapss = cmapss_spec()
    raw = pd.read_csv(cmapss_dir / "train_FD001.txt", sep=r"\s+", header=None, names=CMAPSS_COLUMNS)
    readings = raw.rename(columns=cmapss.rename_map())
    result = validate_readings(readings, cmapss)
    check_accounting(result, readings)
    assert result.report.quarantined_rows == 0
    assert result.report.constant_sensors == [
        "setting_3",
        "sensor_1",
        "sensor_5",
        "sensor_10",
        "sensor_16",
        "sensor_18",
        "sensor_19",
    ]
    # sensor_6 has two levels (21.60/21.61) and long flat stretches, but it is not stuck.
    assert not any("stuck" in w for w in result.report.warnings)
    channels = [*cmapss.setting_names, *cmapss.sensor_names]
    pd.testing.assert_frame_equal(result.valid, readings.astype(dict.fromkeys(channels, float)))
