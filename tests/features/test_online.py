"""The online path: parity with the offline path, rejections, and state stores."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from prognos.errors import (
    ConflictingReadingError,
    DuplicateReadingError,
    OutOfOrderReadingError,
    ReadingRejectedError,
    SchemaError,
    UnknownAssetError,
)
from prognos.features import FeaturePipeline, MemoryStateStore, OnlineFeatures, RedisStateStore
from prognos.features.asset_state import AssetState
from prognos.fleet import cmapss_spec


def _replay(online: OnlineFeatures, readings: pd.DataFrame) -> np.ndarray:
    return np.vstack([online.update(r) for r in readings.to_dict("records")])


def _assert_parity(readings: pd.DataFrame, online: OnlineFeatures | None = None) -> None:
    pipeline = FeaturePipeline(cmapss_spec()).fit(readings)
    offline = pipeline.transform(readings).to_numpy()
    online = online or OnlineFeatures(pipeline)
    replayed = _replay(online, readings)
    # Every feature of every row, first cycles (partial windows) included.
    np.testing.assert_allclose(replayed, offline, rtol=1e-9, atol=0)


@pytest.mark.slow
def test_parity_fd001_every_reading(fd001: pd.DataFrame) -> None:
    _assert_parity(fd001)


@pytest.mark.slow
def test_parity_fd002_every_reading(fd002: pd.DataFrame) -> None:
    _assert_parity(fd002)


@pytest.fixture(scope="module")
def fitted(fd001: pd.DataFrame) -> FeaturePipeline:
    return FeaturePipeline(cmapss_spec()).fit(fd001)


def test_sequences_and_current_match_the_offline_path(
    fitted: FeaturePipeline, fd001: pd.DataFrame
) -> None:
    """The sequence window (longer than the feature history) and the no-new-reading path."""
    readings = fd001[fd001["asset_id"].isin([1, 2])]
    window = 50
    offline_seq, offline_len = fitted.sequences(readings, window)
    offline_features = fitted.transform(readings).to_numpy()
    online = OnlineFeatures(fitted, window=window)
    for i, reading in enumerate(readings.to_dict("records")):
        features, sequence, length = online.update_with_sequence(reading)
        np.testing.assert_array_equal(sequence, offline_seq[i])
        assert length == offline_len[i]
        np.testing.assert_allclose(features, offline_features[i], rtol=1e-9, atol=0)
    last = np.flatnonzero(readings["asset_id"].to_numpy() == 1)[-1]
    features, sequence, length, state = online.current(1)
    np.testing.assert_allclose(features, offline_features[last], rtol=1e-9, atol=0)
    np.testing.assert_array_equal(sequence, offline_seq[last])
    assert length == window and state.count == state.last_time == 192
    with pytest.raises(UnknownAssetError, match="no readings"):
        online.current(999)
    many = online.current_many([2, 999, 1])
    assert isinstance(many[1], UnknownAssetError)
    last_2 = np.flatnonzero(readings["asset_id"].to_numpy() == 2)[-1]
    for got, row in ((many[0], last_2), (many[2], last)):
        assert not isinstance(got, UnknownAssetError)
        np.testing.assert_array_equal(got[0], offline_features[row])  # bit-identical, batched
        np.testing.assert_array_equal(got[1], offline_seq[row])


def test_seeded_states_equal_replayed_states(fitted: FeaturePipeline, fd001: pd.DataFrame) -> None:
    readings = fd001[fd001["asset_id"].isin([1, 2, 3])]
    replayed = OnlineFeatures(fitted, window=50)
    for reading in readings.to_dict("records"):
        replayed.update(reading)
    seeded = OnlineFeatures(fitted, window=50)
    # Asset 1 has a state that missed stored readings (its latest is stored): rebuilt.
    seeded.update(_reading(fd001, 0))
    # Asset 2's state is newer than the table (a reading not stored yet): kept, never rolled back.
    for reading in readings[readings["asset_id"] == 2].to_dict("records"):
        seeded.update(reading)
    newest = seeded.update({**readings[readings["asset_id"] == 2].iloc[-1].to_dict(), "time": 999})
    # Asset 3's latest reading is not in the table, so the table may lack others: kept.
    seeded.update({**readings[readings["asset_id"] == 3].iloc[0].to_dict(), "time": 0})
    assert seeded.seed_states(readings.sample(frac=1.0, random_state=0)) == 1
    got, want = seeded.store.get("1"), replayed.store.get("1")
    assert got is not None and want is not None
    assert got.to_bytes() == want.to_bytes()
    ahead = seeded.store.get("2")
    assert ahead is not None and ahead.last_time == 999
    np.testing.assert_array_equal(seeded.current(2)[0], newest)
    unknown_history = seeded.store.get("3")
    assert unknown_history is not None and unknown_history.count == 1
    fresh = OnlineFeatures(fitted, window=50)  # nothing stored yet: every asset is seeded
    assert fresh.seed_states(readings) == 3
    for asset in ("1", "2", "3"):
        got, want = fresh.store.get(asset), replayed.store.get(asset)
        assert got is not None and want is not None
        assert got.to_bytes() == want.to_bytes()
    assert seeded.fingerprint == replayed.fingerprint
    refit = FeaturePipeline(cmapss_spec()).fit(fd001[fd001["asset_id"] <= 50])
    assert OnlineFeatures(refit, window=50).fingerprint != seeded.fingerprint


def test_states_seeded_from_each_assets_tail_match_its_whole_history(
    fitted: FeaturePipeline, fd001: pd.DataFrame
) -> None:
    seeded = OnlineFeatures(fitted, window=50)
    tail = seeded.seed_tail
    lengths = fd001.groupby("asset_id").size()
    long, short = int(lengths[lengths > tail].index[0]), int(lengths[lengths < tail].index[0])
    readings = fd001[fd001["asset_id"].isin([long, short])]
    replayed = OnlineFeatures(fitted, window=50)
    for reading in readings.to_dict("records"):
        replayed.update(reading)
    counts = {str(a): int(n) for a, n in readings.groupby("asset_id").size().items()}
    assert seeded.seed_states(readings.groupby("asset_id").tail(tail), counts) == 2
    got, want = seeded.store.get(str(short)), replayed.store.get(str(short))
    assert got is not None and want is not None
    assert got.to_bytes() == want.to_bytes()  # no longer than the tail: exact
    got, want = seeded.store.get(str(long)), replayed.store.get(str(long))
    assert got is not None and want is not None
    assert (got.count, got.head, got.last_time, got.regime) == (
        want.count, want.head, want.last_time, want.regime,
    )  # fmt: skip
    np.testing.assert_array_equal(got.history, want.history)  # every window and lag exact
    np.testing.assert_allclose(got.ewma, want.ewma, rtol=0, atol=1e-12)
    assert not np.array_equal(got.ewma, want.ewma)  # (the EWMAs did start elsewhere)
    np.testing.assert_allclose(seeded.current(long)[0], replayed.current(long)[0], atol=1e-12)
    with pytest.raises(ValueError, match="seed_tail"):
        OnlineFeatures(fitted, window=50).seed_states(readings.groupby("asset_id").tail(10), counts)


def _reading(fd001: pd.DataFrame, row: int, **changes: object) -> dict[str, object]:
    reading = fd001.iloc[row].to_dict()
    reading["asset_id"] = int(reading["asset_id"])
    reading["time"] = int(reading["time"])
    reading.update(changes)
    return reading


def test_rejections_name_the_problem_and_change_nothing(
    fitted: FeaturePipeline, fd001: pd.DataFrame
) -> None:
    online = OnlineFeatures(fitted)
    first = online.update(_reading(fd001, 0))
    second = online.update(_reading(fd001, 1))
    before = online.store.get("1")
    assert before is not None and before.count == 2
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        (_reading(fd001, 1), DuplicateReadingError, "already accepted"),
        (_reading(fd001, 0), OutOfOrderReadingError, "older than"),
        (_reading(fd001, 2, sensor_4=float("nan")), ReadingRejectedError, "sensor_4"),
        (_reading(fd001, 2, sensor_4="hot"), ReadingRejectedError, "non-numeric"),
        (_reading(fd001, 2, sensor_3=99999.0), ReadingRejectedError, "sensor_3=99999.0 outside"),
        (_reading(fd001, 2, time=2.5), ReadingRejectedError, "whole number"),
        (_reading(fd001, 2, asset_id=None), ReadingRejectedError, "no asset id"),
    ]
    for reading, error, message in cases:
        with pytest.raises(error, match=message):
            online.update(reading)
    broken = _reading(fd001, 2)
    del broken["sensor_7"]
    with pytest.raises(SchemaError, match="sensor_7"):
        online.update(broken)
    after = online.store.get("1")
    assert after is not None and after.count == 2 and after.last_time == before.last_time
    np.testing.assert_array_equal(after.history, before.history)
    assert first.shape == second.shape == (len(online.feature_names),)


def test_state_round_trips_through_bytes(fitted: FeaturePipeline, fd001: pd.DataFrame) -> None:
    online = OnlineFeatures(fitted)
    for row in range(40):
        online.update(_reading(fd001, row))
    state = online.store.get("1")
    assert state is not None
    restored = online.decode_state(state.to_bytes())
    assert (restored.count, restored.last_time, restored.head) == (40, 40, state.head)
    assert restored.regime == state.regime
    np.testing.assert_array_equal(restored.history, state.history)
    np.testing.assert_array_equal(restored.ewma, state.ewma)
    with pytest.raises(ValueError, match="bytes"):
        online.decode_state(state.to_bytes()[:-8])


def test_timestamps_are_accepted_as_time(fd001: pd.DataFrame) -> None:
    spec = cmapss_spec().model_copy(update={"time_kind": "timestamp"})
    stamped = fd001.head(50).assign(
        time=pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(fd001["time"].head(50), "h")
    )
    online = OnlineFeatures(FeaturePipeline(spec).fit(stamped))
    online.update(_reading(fd001, 0, time="2026-01-01T00:00:00Z"))
    with pytest.raises(OutOfOrderReadingError):
        online.update(_reading(fd001, 1, time="2025-12-31T23:00:00Z"))
    online.update(_reading(fd001, 1, time=pd.Timestamp("2026-01-01T01:00:00Z")))
    with pytest.raises(ReadingRejectedError, match="counts time in timestamps") as err:
        online.update(_reading(fd001, 2, time=3))
    assert err.value.reason == "time_kind"


def test_one_asset_one_time_kind(fitted: FeaturePipeline, fd001: pd.DataFrame) -> None:
    """A cycle fleet refuses a timestamp (it would be stored as ~1.7e18 "cycles", after which
    every real cycle is older than the latest and refused)."""
    online = OnlineFeatures(fitted)
    online.update(_reading(fd001, 0))
    for stamp in ("2026-01-01T00:00:00Z", pd.Timestamp("2026-01-01", tz="UTC")):
        with pytest.raises(ReadingRejectedError, match="counts time in cycle numbers") as err:
            online.update(_reading(fd001, 1, time=stamp))
        assert err.value.reason == "time_kind"
    online.update(_reading(fd001, 1))  # the asset's cycles go on


def test_a_different_reading_at_the_latest_time_is_a_conflict(
    fitted: FeaturePipeline, fd001: pd.DataFrame
) -> None:
    online = OnlineFeatures(fitted)
    first = _reading(fd001, 0)
    online.update(first)
    with pytest.raises(DuplicateReadingError):
        online.update(dict(first))  # the same reading again: idempotent
    changed = {**first, "sensor_2": first["sensor_2"] + 1.0}
    with pytest.raises(ConflictingReadingError) as err:
        online.update(changed)
    assert err.value.reason == "conflict"
    assert f"sensor_2: accepted {first['sensor_2']!r}, sent {changed['sensor_2']!r}" in str(
        err.value
    )
    # Rebuilt from stored readings, the state still knows the latest reading's values.
    seeded = OnlineFeatures(fitted)
    seeded.seed_states(fd001.head(1))
    with pytest.raises(ConflictingReadingError):
        seeded.update(changed)


def test_memory_store_is_atomic_under_threads() -> None:
    store = MemoryStateStore()
    _hammer(store)


def _hammer(store: MemoryStateStore | RedisStateStore, threads: int = 4, each: int = 50) -> None:
    """Concurrent read-modify-writes of one asset: none may be lost."""

    def advance(state: AssetState | None) -> tuple[AssetState, int]:
        if state is None:
            state = AssetState(
                count=0, last_time=0, head=0, history=np.zeros((1, 1)), ewma=np.zeros((0, 1))
            )
        state.count += 1
        state.last_time = state.count
        return state, state.count

    def work() -> None:
        for _ in range(each):
            store.update("same", advance)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    final = store.get("same")
    assert final is not None and final.count == threads * each


@pytest.mark.services
def test_redis_store_parity_and_shared_state(
    redis_url: str, redis_namespace: str, fd001: pd.DataFrame
) -> None:
    readings = fd001[fd001["asset_id"].isin([1, 2])]
    pipeline = FeaturePipeline(cmapss_spec()).fit(fd001)
    offline = pipeline.transform(readings).to_numpy()
    probe = OnlineFeatures(pipeline)
    # Two "workers" with their own connections share one state: alternate readings between them.
    workers = [
        OnlineFeatures(
            pipeline,
            RedisStateStore(redis_url, decode=probe.decode_state, namespace=redis_namespace),
        )
        for _ in range(2)
    ]
    rows = [workers[i % 2].update(r) for i, r in enumerate(readings.to_dict("records"))]
    np.testing.assert_allclose(np.vstack(rows), offline, rtol=1e-9, atol=0)
    assert sorted(workers[0].store.assets()) == ["1", "2"]
    with pytest.raises(DuplicateReadingError):
        workers[1].update(readings.iloc[-1].to_dict())


@pytest.mark.services
def test_redis_store_is_atomic_under_threads(redis_url: str, redis_namespace: str) -> None:
    def decode(raw: bytes) -> AssetState:
        return AssetState.from_bytes(raw, (1, 1), 0)

    _hammer(RedisStateStore(redis_url, decode=decode, namespace=redis_namespace))


def test_redis_store_down_raises_state_store_error() -> None:
    from prognos.errors import StateStoreError

    store = RedisStateStore(
        "redis://127.0.0.1:1/0",
        decode=lambda raw: None,  # type: ignore[arg-type,return-value]
        namespace="x",
        timeout=0.2,
    )
    assert store.ping() is False
    with pytest.raises(StateStoreError, match="Redis unavailable"):
        store.get("1")
