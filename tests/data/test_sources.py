"""Sources: real C-MAPSS files, bad sources, CSV/Parquet round trips with mapping and sidecars."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognos.data.dataset import FleetData
from prognos.data.sinks import write_source
from prognos.data.sources import (
    load_source,
    parse_source,
    read_events,
    sidecars,
)
from prognos.errors import DataSourceError, SchemaError
from prognos.fleet import FleetSpec, LabelSpec, SensorSpec, cmapss_spec

HAS_SIMULATOR = importlib.util.find_spec("prognos.data.simulator") is not None


# ------------------------------------------------------------------------------------ C-MAPSS


def test_cmapss_train_fd001(cmapss_dir: Path) -> None:
    data = load_source(f"cmapss:{cmapss_dir / 'train_FD001.txt'}")
    assert data.readings.shape == (20_631, 26)
    assert data.n_assets == 100
    assert list(data.readings.columns) == cmapss_spec().columns
    assert data.readings.columns[:2].tolist() == ["asset_id", "time"]
    assert data.run_to_failure is True
    assert data.spec == cmapss_spec("FD001")
    assert data.events is None
    dtypes = data.readings.dtypes
    assert dtypes["asset_id"] == "int64" and dtypes["time"] == "int64"
    assert (dtypes.iloc[2:] == "float64").all()  # sensor_17 "392" is still a float channel
    assert data.meta["extra_columns"] == []


def test_cmapss_test_file_does_not_run_to_failure(cmapss_dir: Path) -> None:
    data = load_source(f"cmapss:{cmapss_dir / 'test_FD001.txt'}")
    assert data.run_to_failure is False
    assert data.n_assets == 100


def test_cmapss_fd002_loads_fast(cmapss_dir: Path) -> None:
    start = time.perf_counter()
    data = load_source(f"cmapss:{cmapss_dir / 'train_FD002.txt'}")
    elapsed = time.perf_counter() - start
    assert data.n_assets == 260
    assert len(data.readings) == 53_759
    assert elapsed < 1.0, f"train_FD002 took {elapsed:.2f} s"


def test_cmapss_round_trip(cmapss_dir: Path, tmp_path: Path) -> None:
    data = load_source(f"cmapss:{cmapss_dir / 'train_FD001.txt'}")
    target = tmp_path / "out" / "train_FD001.txt"
    assert write_source(data, f"cmapss:{target}") == [target]
    back = load_source(f"cmapss:{target}")
    pd.testing.assert_frame_equal(back.readings, data.readings)
    assert back.spec == data.spec and back.run_to_failure


# -------------------------------------------------------------------------------- bad sources


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("cmapss:../x/train_FD001.txt", ("cmapss", "../x/train_FD001.txt")),
        ("CSV:data/a.csv", ("csv", "data/a.csv")),
        ("parquet:dir/", ("parquet", "dir/")),
        ("sim:", ("sim", "")),
        ("sim:n_assets=5,seed=1", ("sim", "n_assets=5,seed=1")),
    ],
)
def test_parse_source(source: str, expected: tuple[str, str]) -> None:
    assert parse_source(source) == expected


@pytest.mark.parametrize("source", ["excel:a.xlsx", "data/a.csv", "csv:", "parquet:  "])
def test_bad_source_strings(source: str) -> None:
    with pytest.raises(DataSourceError) as info:
        load_source(source)
    message = str(info.value)
    assert source.strip() in message or "empty path" in message
    if not source.startswith(("csv", "parquet")):
        assert "cmapss" in message and "parquet" in message and "sim" in message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "train_FD001.txt"
    for kind in ("cmapss", "csv", "parquet"):
        with pytest.raises(DataSourceError, match="no such file"):
            load_source(f"{kind}:{missing}")


def test_malformed_cmapss(tmp_path: Path) -> None:
    short = tmp_path / "train_FD009.txt"
    short.write_text("1 1 0.1 0.2 100.0\n1 2 0.1 0.2 100.0\n")
    with pytest.raises(DataSourceError, match=r"expected 26 .* found 5"):
        load_source(f"cmapss:{short}")
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("1 2 3\n1 2 3 4\n")
    with pytest.raises(DataSourceError, match=r"ragged\.txt") as info:
        load_source(f"cmapss:{ragged}")
    assert isinstance(info.value.__cause__, pd.errors.ParserError)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataSourceError, match="empty"):
        load_source(f"cmapss:{empty}")


def test_corrupt_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataSourceError, match=r"bad\.parquet"):
        load_source(f"parquet:{bad}")


def test_csv_missing_asset_column(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    pd.DataFrame({"cycle": [1, 2], "s1": [0.1, 0.2]}).to_csv(path, index=False)
    with pytest.raises(SchemaError, match="asset column"):
        load_source(f"csv:{path}")
    spec = FleetSpec(
        name="x", asset_column="engine", time_column="cycle", sensors=[SensorSpec(name="s1")]
    )
    with pytest.raises(SchemaError, match="engine"):
        load_source(f"csv:{path}", spec=spec)


def test_loaders_keep_dirty_values(tmp_path: Path) -> None:
    path = tmp_path / "dirty.csv"
    path.write_text("unit,cycle,setting_1,s1,s2,note\n1,1,0.5,1.0,abc,x\n1,2,0.5,,2.0,y\n")
    data = load_source(f"csv:{path}")
    assert data.spec.setting_names == ["setting_1"]
    assert data.spec.sensor_names == ["s1", "s2"]  # s2 is mostly numeric: still a sensor
    assert data.meta["extra_columns"] == ["note"]
    assert data.readings["s1"].isna().tolist() == [False, True]
    assert data.readings["s2"].tolist() == ["abc", "2.0"]  # read as is, for validation to judge


# ------------------------------------------------------------------------------- round trips


def _mapped_fleet(timestamps: bool = False) -> FleetData:
    """Source columns named differently from the canonical ones, with an event log."""
    rng = np.random.default_rng(0)
    n = 12
    if timestamps:
        times = pd.Series(
            np.tile(pd.date_range("2024-01-01", periods=6, freq="h"), 2), dtype="datetime64[us]"
        )
    else:
        times = pd.Series(np.tile(np.arange(1, 7), 2), dtype="int64")
    readings = pd.DataFrame(
        {
            "asset_id": np.repeat([7, 9], 6),
            "time": times,
            "load": rng.random(n),
            "temp": rng.normal(500, 5, n),
            "vib": rng.normal(0, 1, n),
        }
    )
    spec = FleetSpec(
        name="pumps",
        asset_column="pump_no",
        time_column="t",
        time_kind="timestamp" if timestamps else "cycle",
        settings=[SensorSpec(name="load", source="LOAD_PCT")],
        sensors=[
            SensorSpec(name="temp", source="T_OUT", unit="K", min=0.0, max=1000.0),
            SensorSpec(name="vib", source="VIB_RMS"),
        ],
        labels=LabelSpec(shape="event_log", horizon=3),
    )
    events = pd.DataFrame(
        {
            "asset_id": [7, 9, 9],
            "time": [times[5], times[1], times[4]],
            "event": ["failure", "repair", "failure"],
            "component": ["bearing", None, "seal"],
        }
    )
    return FleetData(readings=readings, spec=spec, source="hand", events=events)


def _assert_same(back: FleetData, data: FleetData) -> None:
    pd.testing.assert_frame_equal(back.readings, data.readings)
    assert back.spec == data.spec
    assert back.events is not None and data.events is not None
    pd.testing.assert_frame_equal(back.events, data.events)
    assert back.run_to_failure == data.run_to_failure


def test_csv_round_trip_with_mapping_and_sidecars(tmp_path: Path) -> None:
    data = _mapped_fleet()
    target = tmp_path / "out" / "fleet.csv"
    written = write_source(data, f"csv:{target}")
    side = sidecars(target)
    assert side.spec == tmp_path / "out" / "fleet.spec.yaml"
    assert side.events == tmp_path / "out" / "fleet.events.csv"
    assert set(written) == {target, side.spec, side.events, side.meta}
    assert target.read_text().splitlines()[0] == "pump_no,t,LOAD_PCT,T_OUT,VIB_RMS"
    back = load_source(f"csv:{target}")
    _assert_same(back, data)
    assert back.meta["extra_columns"] == []

    # Explicit spec= and events= instead of the sidecars.
    moved = tmp_path / "elsewhere.csv"
    moved.write_text(target.read_text())
    explicit = load_source(f"csv:{moved}", spec=data.spec, events=str(side.events))
    _assert_same(explicit, data)


def test_parquet_round_trip_file_and_directory(tmp_path: Path) -> None:
    data = _mapped_fleet(timestamps=True)
    target = tmp_path / "fleet.parquet"
    write_source(data, f"parquet:{target}")
    _assert_same(load_source(f"parquet:{target}"), data)

    directory = tmp_path / "fleetdir"
    written = write_source(data, f"parquet:{directory}/")
    assert directory / "spec.yaml" in written and directory / "events.csv" in written
    _assert_same(load_source(f"parquet:{directory}"), data)


def test_csv_round_trip_with_timestamps(tmp_path: Path) -> None:
    data = _mapped_fleet(timestamps=True)
    write_source(data, f"csv:{tmp_path / 'ts.csv'}")
    _assert_same(load_source(f"csv:{tmp_path / 'ts.csv'}"), data)


def test_events_sidecar_gives_event_log_shape(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    pd.DataFrame({"asset_id": [1, 1], "time": [1, 2], "s1": [0.1, 0.2]}).to_csv(path, index=False)
    assert load_source(f"csv:{path}").spec.labels.shape == "run_to_failure"
    (tmp_path / "plain.events.csv").write_text("asset_id,time,event\n1,2,failure\n")
    data = load_source(f"csv:{path}")
    assert data.spec.labels.shape == "event_log"
    assert data.events is not None and data.events["event"].tolist() == ["failure"]
    assert data.run_to_failure is False


def test_write_without_events_removes_stale_sidecar(tmp_path: Path) -> None:
    data = _mapped_fleet()
    target = f"csv:{tmp_path / 'f.csv'}"
    write_source(data, target)
    data.events = None
    data.run_to_failure = True
    write_source(data, target)
    assert not (tmp_path / "f.events.csv").exists()
    back = load_source(target)
    assert back.events is None and back.run_to_failure is True


def test_cmapss_write_refuses_other_shapes(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="3 settings and 21 sensors"):
        write_source(_mapped_fleet(), f"cmapss:{tmp_path / 'x.txt'}")
    with pytest.raises(DataSourceError, match="generated"):
        write_source(_mapped_fleet(), "sim:")


def test_read_events_validates(tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text("unit,cycle,event,component\n2,5,failure,fan\n1,9,repair,\n1,3,failure,fan\n")
    events = read_events(path, asset_column="unit", time_column="cycle")
    assert events.columns.tolist() == ["asset_id", "time", "event", "component"]
    assert events[["asset_id", "time"]].values.tolist() == [[1, 3], [1, 9], [2, 5]]
    with pytest.raises(SchemaError, match="unknown event type"):
        read_events(path, asset_column="unit", time_column="cycle", known_events={"failure"})
    with pytest.raises(SchemaError, match="missing column"):
        read_events(path)
    path.write_text("asset_id,time,event\n1,,failure\n")
    with pytest.raises(SchemaError, match="missing values"):
        read_events(path)
    path.write_text("asset_id,time,event\n1,soon,failure\n")
    with pytest.raises(SchemaError, match="neither numeric nor ISO 8601"):
        read_events(path)


# ----------------------------------------------------------------------------------------- sim


@pytest.mark.skipif(not HAS_SIMULATOR, reason="prognos.data.simulator not written yet")
def test_sim_source() -> None:
    data = load_source("sim:n_assets=4,seed=3")
    assert data.n_assets == 4
    assert data.source == "sim:n_assets=4,seed=3"
    assert list(data.readings.columns) == data.spec.columns
    again = load_source("sim:n_assets=4,seed=3")
    pd.testing.assert_frame_equal(again.readings, data.readings)

    telemetry = load_source("sim:n_assets=3,seed=1,mode=telemetry")
    assert telemetry.events is not None
    assert {"asset_id", "time", "event"} <= set(telemetry.events.columns)

    assert load_source("sim:").n_assets > 0


@pytest.mark.skipif(not HAS_SIMULATOR, reason="prognos.data.simulator not written yet")
def test_sim_bad_parameters() -> None:
    with pytest.raises(DataSourceError, match="n_asets"):
        load_source("sim:n_asets=3")
    with pytest.raises(DataSourceError, match="mode"):
        load_source("sim:mode=sideways")
    with pytest.raises(DataSourceError, match="key=value"):
        load_source("sim:seed")
