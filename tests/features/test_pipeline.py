"""The offline transformer: fit contract, values against pandas, behaviour on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.errors import NotFittedError, SchemaError
from prognos.features import FeaturePipeline, FeatureSpec
from prognos.fleet import FleetSpec, SensorSpec
from tests.features.conftest import one_sensor_fleet


def _two_assets() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for asset, n in (("a", 40), ("b", 25)):
        frames.append(
            pd.DataFrame(
                {
                    "asset_id": asset,
                    "time": np.arange(1, n + 1),
                    "s": np.cumsum(rng.normal(size=n)) + 10.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


PLAIN = FeatureSpec(
    windows=[4, 10],
    ewma_spans=[3],
    lags=[2],
    rate_of_change=[3],
    regime_normalisation=False,
    health_indicator=False,
    drop_constant=False,
)


def test_matches_pandas_rolling_on_the_normalised_signal() -> None:
    data = _two_assets()
    features = FeaturePipeline(one_sensor_fleet(), PLAIN).fit_transform(data)
    z = (data["s"] - data["s"].mean()) / data["s"].std(ddof=0)
    grouped = z.groupby(data["asset_id"])
    for w in (4, 10):
        rolling = grouped.rolling(w, min_periods=1)
        for agg in ("mean", "min", "max"):
            expected = getattr(rolling, agg)().reset_index(level=0, drop=True)
            np.testing.assert_allclose(features[f"s__{agg}_{w}"], expected, rtol=1e-9, atol=1e-12)
        std = rolling.std().reset_index(level=0, drop=True).fillna(0.0)
        np.testing.assert_allclose(features[f"s__std_{w}"], std, rtol=1e-9, atol=1e-12)
    ewma = grouped.transform(lambda s: s.ewm(span=3, adjust=False).mean())
    np.testing.assert_allclose(features["s__ewma_3"], ewma, rtol=1e-12)
    np.testing.assert_allclose(
        features["s__lag_2"], grouped.shift(2).fillna(grouped.transform("first")), rtol=1e-12
    )
    np.testing.assert_array_equal(features["age"], data.groupby("asset_id").cumcount() + 1)


def test_row_order_in_is_row_order_out() -> None:
    data = _two_assets()
    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN).fit(data)
    expected = pipeline.transform(data)
    shuffled = data.sample(frac=1.0, random_state=1)
    got = pipeline.transform(shuffled)
    assert list(got.index) == list(shuffled.index)
    pd.testing.assert_frame_equal(got.loc[expected.index], expected)


def test_renaming_assets_changes_nothing() -> None:
    data = _two_assets()
    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN).fit(data)
    renamed = data.assign(asset_id=data["asset_id"].map({"a": "pump-17", "b": 3}))
    pd.testing.assert_frame_equal(pipeline.transform(renamed), pipeline.transform(data))


def test_transform_before_fit_and_missing_columns_raise() -> None:
    data = _two_assets()
    with pytest.raises(NotFittedError):
        FeaturePipeline(one_sensor_fleet()).transform(data)
    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN).fit(data)
    with pytest.raises(SchemaError, match="'s'"):
        pipeline.transform(data.drop(columns="s"))
    with pytest.raises(SchemaError, match="nope"):
        FeaturePipeline(one_sensor_fleet(), FeatureSpec(sensors=["nope"])).fit(data)


def test_sklearn_contract_params_and_clone() -> None:
    from sklearn.base import clone

    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN)
    assert pipeline.get_params()["spec"] is PLAIN
    assert clone(pipeline).fit(_two_assets()) is not None
    assert not hasattr(pipeline, "layout_")


def test_fd001_single_regime_and_constant_sensors_dropped(fd001: pd.DataFrame) -> None:
    from prognos.fleet import cmapss_spec

    pipeline = FeaturePipeline(cmapss_spec()).fit(fd001)
    assert pipeline.regimes_.n_regimes == 1
    for constant in (
        "sensor_1",
        "sensor_5",
        "sensor_6",
        "sensor_10",
        "sensor_16",
        "sensor_18",
        "sensor_19",
    ):
        assert constant in pipeline.dropped_sensors_
    assert len(pipeline.sensors_) == 14


def test_fd002_regime_normalisation_removes_operating_condition(fd002: pd.DataFrame) -> None:
    from prognos.fleet import cmapss_spec

    pipeline = FeaturePipeline(cmapss_spec()).fit(fd002)
    assert pipeline.regimes_.n_regimes == 6
    features = pipeline.transform(fd002)
    raw_spread = fd002.groupby(features["regime"])["sensor_2"].mean().std()
    norm_spread = features.groupby("regime")["sensor_2__value"].mean().std()
    assert raw_spread > 10.0
    assert norm_spread < 1e-9
    assert np.isfinite(features.to_numpy()).all()


def test_health_index_rises_towards_failure(fd001: pd.DataFrame) -> None:
    from prognos.fleet import cmapss_spec

    features = FeaturePipeline(cmapss_spec()).fit_transform(fd001)
    rul = fd001.groupby("asset_id")["time"].transform("max") - fd001["time"]
    early = features["health_index__mean_10"][rul > 150].mean()
    late = features["health_index__mean_10"][rul < 10].mean()
    assert late > early + 2.0


def test_multi_regime_fleet_with_settings() -> None:
    rng = np.random.default_rng(3)
    n = 600
    regime = rng.integers(0, 3, n)
    fleet = FleetSpec(
        name="multi", settings=[SensorSpec(name="load")], sensors=[SensorSpec(name="temp")]
    )
    data = pd.DataFrame(
        {
            "asset_id": np.repeat([1, 2, 3], n // 3),
            "time": np.tile(np.arange(n // 3), 3),
            "load": regime * 50.0 + rng.normal(0, 0.01, n),
            "temp": regime * 100.0 + rng.normal(0, 1, n),
        }
    )
    pipeline = FeaturePipeline(fleet).fit(data)
    assert pipeline.regimes_.n_regimes == 3
    values = pipeline.transform(data)["temp__value"]
    assert abs(values.mean()) < 0.1 and 0.9 < values.std() < 1.1


def test_sequences_are_the_last_window_of_channels_oldest_first() -> None:
    data = _two_assets()
    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN).fit(data)
    shuffled = data.sample(frac=1.0, random_state=2)
    seq, lengths = pipeline.sequences(shuffled, window=6)
    values = pipeline.transform(shuffled)["s__value"].to_numpy()
    assert seq.shape == (len(data), 6, 1) and seq.dtype == np.float32
    keys = zip(shuffled["asset_id"], shuffled["time"], strict=True)
    by_key = dict(zip(keys, values, strict=True))
    for i, (asset, time) in enumerate(zip(shuffled["asset_id"], shuffled["time"], strict=True)):
        assert lengths[i] == min(time, 6)
        expected = [by_key.get((asset, t), 0.0) for t in range(time - 5, time + 1)]
        np.testing.assert_allclose(seq[i, :, 0], np.float32(expected), rtol=1e-6)


def test_selected_rows_equal_the_full_matrix_rows() -> None:
    data = _two_assets().sample(frac=1.0, random_state=5)
    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN).fit(data)
    rows = np.array([7, 0, 41, 3])
    full = pipeline.transform(data)
    pd.testing.assert_frame_equal(pipeline.transform(data, rows), full.iloc[rows])
    seq, lengths = pipeline.sequences(data, 6)
    seq_rows, lengths_rows = pipeline.sequences(data, 6, rows)
    np.testing.assert_array_equal(seq_rows, seq[rows])
    np.testing.assert_array_equal(lengths_rows, lengths[rows])


def test_features_and_sequences_together_equal_the_separate_calls() -> None:
    data = _two_assets().sample(frac=1.0, random_state=6)
    pipeline = FeaturePipeline(one_sensor_fleet(), PLAIN).fit(data)
    rows = np.array([5, 30, 2])
    features, seq, lengths = pipeline.features_and_sequences(data, 6, rows)
    pd.testing.assert_frame_equal(features, pipeline.transform(data, rows))
    expected_seq, expected_lengths = pipeline.sequences(data, 6, rows)
    np.testing.assert_array_equal(seq, expected_seq)
    np.testing.assert_array_equal(lengths, expected_lengths)


def test_features_at_a_cut_do_not_see_later_readings(fd002: pd.DataFrame) -> None:
    """No leakage from the future: each engine's row at a cut equals the row built from its
    history truncated there, with the default (longest) windows, on a multi-regime fleet."""
    from prognos.fleet import cmapss_spec

    pipeline = FeaturePipeline(cmapss_spec()).fit(fd002)
    full = pipeline.transform(fd002)
    rng = np.random.default_rng(3)
    last = fd002.groupby("asset_id")["time"].transform("max")
    cut_at = fd002["asset_id"].map(
        {a: int(rng.integers(5, m)) for a, m in fd002.groupby("asset_id")["time"].max().items()}
    )
    truncated = fd002[fd002["time"] <= cut_at]
    assert (truncated["time"] < last[truncated.index]).all()
    cut = pipeline.transform(truncated)
    rows = (truncated["time"] == cut_at[truncated.index]).to_numpy()
    np.testing.assert_allclose(
        cut.to_numpy()[rows], full.loc[truncated.index[rows]].to_numpy(), rtol=1e-9, atol=1e-12
    )
    assert max(pipeline.spec_.windows) >= 150 and rows.sum() == fd002["asset_id"].nunique()
