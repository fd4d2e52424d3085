"""The sequence member: learns a simulated fleet, masks padding, deterministic, pickles, clones."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from prognos.data.labels import run_to_failure_labels
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import NotFittedError
from prognos.features import FeaturePipeline
from prognos.models.base import ModelInput, Targets
from prognos.models.sequence import SequenceModel

WINDOW = 20
# Small and quick; the defaults are sized for real fleets, not for a unit test.
FAST: dict[str, Any] = {"hidden": 16, "max_epochs": 20, "patience": 5, "lr": 4e-3, "threads": 1}


@dataclass(frozen=True)
class Fleet:
    train: tuple[ModelInput, Targets]
    test: tuple[ModelInput, Targets]
    test_time: np.ndarray


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    """40 simulated assets; 30 to train on (fit the pipeline too), 10 held out."""
    data = simulate_fleet(SimulatorConfig(n_assets=40, seed=11))
    readings = data.readings
    labels = run_to_failure_labels(readings)
    assets = readings["asset_id"].to_numpy()
    is_test = assets > 30
    pipeline = FeaturePipeline(data.spec).fit(readings[~is_test])
    sequences, lengths = pipeline.sequences(readings, WINDOW)
    X = ModelInput(
        features=np.zeros((len(readings), 0)),
        feature_names=[],
        sequences=sequences,
        lengths=lengths,
        groups=assets,
    )
    y = Targets(
        rul=labels["rul_capped"].to_numpy(np.float64),
        failed=labels["failure_within_h"].to_numpy(np.int64),
    )
    # Every second training row: windows of neighbouring rows overlap almost entirely.
    train = np.flatnonzero(~is_test)[::2]
    test = np.flatnonzero(is_test)
    return Fleet(
        train=(X.take(train), y.take(train)),
        test=(X.take(test), y.take(test)),
        test_time=readings["time"].to_numpy()[test],
    )


@pytest.fixture(scope="module", params=["lstm", "cnn"])
def fitted(request: pytest.FixtureRequest, fleet: Fleet) -> SequenceModel:
    return SequenceModel(arch=request.param, **FAST).fit(*fleet.train)


def _small(fleet: Fleet, rows: int = 600) -> tuple[ModelInput, Targets]:
    X, y = fleet.train
    take = np.arange(min(rows, len(X)))
    return X.take(take), y.take(take)


# --- learning and behaviour -------------------------------------------------------------------


def test_learns_held_out_assets(fitted: SequenceModel, fleet: Fleet) -> None:
    X, y = fleet.test
    rul, proba = fitted.predict_rul_and_proba(X)
    assert rul.dtype == np.float64 and proba.dtype == np.float64
    assert rul.shape == proba.shape == (len(X),)
    assert (rul >= 0).all() and ((proba >= 0) & (proba <= 1)).all()
    # Measured 0.86-0.91 and >= 0.99 over fleet seeds 1-4 and 11 (trees on features: ~0.85-0.9).
    assert pearsonr(rul, y.rul).statistic > 0.8
    assert roc_auc_score(y.failed, proba) > 0.95
    # The prior correction keeps probabilities near the base rate, not pos_weight-inflated.
    assert abs(proba.mean() - y.failed.mean()) < 0.05
    assert np.array_equal(fitted.predict_rul(X), rul)
    assert np.array_equal(fitted.predict_proba(X), proba)
    assert 1 <= fitted.best_epoch_ <= len(fitted.history_) <= FAST["max_epochs"]
    assert all(np.isfinite(val) for _, _, val in fitted.history_)


def test_late_life_means_higher_risk_and_lower_rul(fitted: SequenceModel, fleet: Fleet) -> None:
    X, _ = fleet.test
    groups = np.asarray(X.groups)
    early, late = [], []
    for asset in np.unique(groups):
        rows = np.flatnonzero(groups == asset)
        rows = rows[np.argsort(fleet.test_time[rows])]
        early.append(rows[WINDOW : WINDOW + 20])  # full windows, long before failure
        late.append(rows[-15:])  # inside the horizon
    e, lt = X.take(np.concatenate(early)), X.take(np.concatenate(late))
    assert fitted.predict_proba(lt).mean() > fitted.predict_proba(e).mean() + 0.5
    assert fitted.predict_rul(lt).mean() < fitted.predict_rul(e).mean() - 50


def test_short_histories_are_masked_not_dropped(fitted: SequenceModel, fleet: Fleet) -> None:
    X, _ = fleet.test
    short = np.flatnonzero(X.lengths < WINDOW)
    assert len(short) > 0
    Xs = X.take(short)
    pad = np.arange(WINDOW)[None, :] < (WINDOW - Xs.lengths)[:, None]
    assert (Xs.sequences[pad] == 0).all()  # the pipeline pads with zeros
    rul, proba = fitted.predict_rul_and_proba(Xs)
    assert np.isfinite(rul).all() and np.isfinite(proba).all()
    # The network multiplies by the mask: garbage in padded positions changes nothing, exactly.
    noisy = Xs.sequences.copy()
    noisy[pad] = np.random.default_rng(0).normal(0, 50, size=noisy[pad].shape)
    rul2, proba2 = fitted.predict_rul_and_proba(replace(Xs, sequences=noisy))
    assert np.array_equal(rul, rul2) and np.array_equal(proba, proba2)
    # A one-reading history is a valid input too.
    one = fitted.predict_rul(X.take(np.flatnonzero(X.lengths == 1)))
    assert len(one) > 0 and np.isfinite(one).all()


# --- contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["lstm", "cnn"])
def test_same_seed_same_predictions(fleet: Fleet, arch: str) -> None:
    X, y = _small(fleet)
    params: dict[str, Any] = {"arch": arch, "hidden": 8, "max_epochs": 2, "threads": 1, "seed": 3}
    a = SequenceModel(**params).fit(X, y).predict_rul_and_proba(X)
    b = SequenceModel(**params).fit(X, y).predict_rul_and_proba(X)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = SequenceModel(**{**params, "seed": 4}).fit(X, y).predict_rul(X)
    assert not np.array_equal(a[0], c)


def test_pickle_round_trip(fitted: SequenceModel, fleet: Fleet) -> None:
    X, _ = fleet.test
    restored = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(restored.predict_rul(X), fitted.predict_rul(X))
    assert np.array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert restored.history_ == fitted.history_ and restored.best_epoch_ == fitted.best_epoch_
    assert (restored.window_, restored.n_channels_) == (WINDOW, X.sequences.shape[2])


def test_not_fitted_clone_and_params(fleet: Fleet) -> None:
    X, _ = fleet.test
    model = SequenceModel(arch="cnn", hidden=8, seed=5, threads=1)
    with pytest.raises(NotFittedError):
        model.predict_rul(X)
    with pytest.raises(NotFittedError):
        model.predict_proba(X)
    params = model.get_params()
    assert params["arch"] == "cnn" and params["hidden"] == 8 and params["seed"] == 5
    assert set(params) == {
        "arch", "hidden", "layers", "dropout", "pool", "lr", "batch_size", "max_epochs", "patience",
        "validation_fraction", "rul_scale", "loss_weight", "level_noise", "ema_decay",
        "epoch_rows", "seed", "device", "threads", "verbose",
    }  # fmt: skip
    twin = clone(model)
    assert twin is not model and twin.get_params() == params
    assert not hasattr(twin, "net_")


def test_leaves_torch_global_state_alone(fleet: Fleet) -> None:
    X, y = _small(fleet)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.get_rng_state()
    model = SequenceModel(hidden=8, max_epochs=1).fit(X, y)
    model.predict_rul(X.take(np.arange(3)))
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_validation_split_is_by_asset() -> None:
    groups = np.repeat(np.array(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], object), 7)
    train, val = SequenceModel(validation_fraction=0.3)._split(groups, np.random.default_rng(0))
    assert len(set(groups[val])) == 3
    assert not set(groups[train]) & set(groups[val])
    assert len(train) + len(val) == len(groups)
    train, val = SequenceModel()._split(np.ones(5, dtype=np.int64), np.random.default_rng(0))
    assert len(val) == 0 and len(train) == 5  # one asset: no early stopping set


def test_missing_rul_rows_train_the_failure_head_only(fleet: Fleet) -> None:
    X, y = _small(fleet)
    rul = y.rul.copy()
    rul[::3] = np.nan
    model = SequenceModel(hidden=8, max_epochs=2, threads=1).fit(X, Targets(rul, y.failed))
    assert np.isfinite(model.predict_rul(X)).all()
    assert all(np.isfinite(train) for _, train, _ in model.history_)


def test_bad_inputs_say_what_is_wrong(fitted: SequenceModel, fleet: Fleet) -> None:
    X, y = fleet.test
    with pytest.raises(ValueError, match="channels"):
        fitted.predict_rul(replace(X, sequences=X.sequences[:, :, :-1]))
    with pytest.raises(ValueError, match="window"):
        fitted.predict_rul(
            replace(X, sequences=X.sequences[:, 1:, :], lengths=X.lengths.clip(1, 19))
        )
    with pytest.raises(ValueError, match="3-D"):
        fitted.predict_rul(replace(X, sequences=X.sequences[:, :, 0]))
    with pytest.raises(ValueError, match="lengths"):
        fitted.predict_rul(replace(X, lengths=X.lengths + WINDOW))
    bad = X.sequences.copy()
    bad[0, -1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict_rul(replace(X, sequences=bad))
    with pytest.raises(ValueError, match="targets"):
        SequenceModel().fit(X, y.take(np.arange(5)))
    with pytest.raises(ValueError, match="arch"):
        SequenceModel(arch="gru").fit(X, y)  # type: ignore[arg-type]


@pytest.mark.gpu
def test_trains_on_cuda(fleet: Fleet) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available (torch.cuda.is_available() is False)")
    X, y = _small(fleet)
    model = SequenceModel(hidden=8, max_epochs=2, device="cuda").fit(X, y)
    assert model.device_.type == "cuda"
    assert next(model.net_.parameters()).device.type == "cuda"
    rul, proba = model.predict_rul_and_proba(X)
    assert np.isfinite(rul).all() and np.isfinite(proba).all()
    restored = pickle.loads(pickle.dumps(model))  # CPU copy: loads without CUDA
    assert next(restored.net_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.predict_rul(X), rul, rtol=1e-4, atol=1e-3)


def test_weight_averaging_and_epoch_rows_are_used_and_checked(fleet: Fleet) -> None:
    """The kept weights are the moving average (not the last step's), an epoch sees at most
    ``epoch_rows`` rows (so its time is bounded on a large fleet), and bad values are refused."""
    X, y = _small(fleet)
    common = {"arch": "cnn", "hidden": 8, "max_epochs": 3, "patience": 3, "threads": 1}
    plain = SequenceModel(ema_decay=0.0, epoch_rows=None, **common).fit(X, y)
    averaged = SequenceModel(ema_decay=0.99, epoch_rows=None, **common).fit(X, y)
    assert not np.allclose(plain.predict_rul(X), averaged.predict_rul(X))
    short = SequenceModel(ema_decay=0.0, epoch_rows=64, batch_size=32, **common).fit(X, y)
    # 64 rows an epoch at batch 32 is 2 steps: far from the full-epoch fit.
    assert not np.allclose(short.predict_rul(X), plain.predict_rul(X))
    for bad in ({"ema_decay": 1.0}, {"ema_decay": -0.1}, {"epoch_rows": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SequenceModel(**{**common, **bad}).fit(X, y)


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_a_state_dict_from_before_the_relu_modules_loads(arch: str) -> None:
    """The ReLUs became ``nn.ReLU`` modules (DeepLift hooks them) where they were ``torch.relu``
    calls: no parameters, so a network saved before (these keys and shapes) still loads, strictly,
    and pickled models keep loading."""
    from prognos.models.network import SequenceNet

    hidden, inputs = 4, 2 * 3 + 1  # 3 channels: levels, centred levels, the mask
    head: dict[str, tuple[int, ...]] = {
        "shared.weight": (hidden, 2 * hidden if arch == "cnn" else hidden),
        "shared.bias": (hidden,),
        "rul_head.weight": (1, hidden),
        "rul_head.bias": (1,),
        "fail_head.weight": (1, hidden),
        "fail_head.bias": (1,),
    }
    body: dict[str, tuple[int, ...]]
    if arch == "cnn":  # window 8: dilations 1, 2, 4
        body = {
            f"convs.{i}.{k}": shape
            for i, width in enumerate([inputs, hidden, hidden])
            for k, shape in (("weight", (hidden, width, 3)), ("bias", (hidden,)))
        }
    else:
        body = {
            f"lstm.{k}_l{layer}": shape
            for layer, width in enumerate([inputs, hidden])
            for k, shape in (
                ("weight_ih", (4 * hidden, width)),
                ("weight_hh", (4 * hidden, hidden)),
                ("bias_ih", (4 * hidden,)),
                ("bias_hh", (4 * hidden,)),
            )
        }
    generator = torch.Generator().manual_seed(0)
    old = {k: torch.randn(shape, generator=generator) for k, shape in {**body, **head}.items()}
    net = SequenceNet(arch, n_channels=3, window=8, hidden=hidden, layers=2, dropout=0.1)  # type: ignore[arg-type]
    assert list(net.state_dict()) == list(old)
    net.load_state_dict(old)  # strict
    for k, v in net.state_dict().items():
        assert torch.equal(v, old[k])
    # What unpickling a model saved before does: rebuild the network, load its state_dict.
    model = SequenceModel(arch=arch, hidden=hidden, layers=2)  # type: ignore[arg-type]
    state = {**model.__getstate__(), "window_": 8, "n_channels_": 3, "_net_state": old}
    del state["pool"]  # saved before the parameter existed: loads unpooled
    restored = SequenceModel.__new__(SequenceModel)
    restored.__setstate__(state)
    assert restored.pool == 1 and restored.net_.pool == 1
    assert all(torch.equal(v, old[k]) for k, v in restored.net_.state_dict().items())


# --- multi-scale input (pool) -----------------------------------------------------------------


def _explicit_pool(x: np.ndarray, lengths: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Group means over real readings and real fractions, group by group from the newest."""
    rows, window, channels = x.shape
    groups = -(-window // pool)
    means = np.zeros((rows, groups, channels))
    fractions = np.zeros((rows, groups))
    for r in range(rows):
        for g in range(groups):
            end = window - (groups - 1 - g) * pool
            real = [t for t in range(max(end - pool, 0), end) if t >= window - lengths[r]]
            if real:
                means[r, g] = x[r, real].mean(axis=0)
            fractions[r, g] = len(real) / pool
    return means, fractions


@pytest.mark.parametrize(("window", "pool"), [(12, 3), (10, 3), (7, 2), (5, 8)])
def test_pool_steps_equals_explicit_averaging(window: int, pool: int) -> None:
    from prognos.models.network import pool_steps

    rng = np.random.default_rng(window * pool)
    x = rng.normal(size=(6, window, 4))
    lengths = np.array([window, 1, 2, pool + 1, max(window - 1, 1), 3])
    mask = np.arange(window)[None, :] >= (window - lengths)[:, None]
    x[~mask] = 99.0  # padding: must not show
    means, fractions = pool_steps(
        torch.from_numpy(x * mask[..., None]), torch.from_numpy(mask.astype(np.float64)), pool
    )
    expected_means, expected_fractions = _explicit_pool(x, lengths, pool)
    np.testing.assert_allclose(means.numpy(), expected_means, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fractions.numpy(), expected_fractions)


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_pooled_network_is_the_network_on_averaged_input(arch: str) -> None:
    """Window 12 pooled by 3 is, weight for weight, the window-4 network reading the 3-reading
    means (lengths in whole groups, so the pooled mask is the 0/1 mask of length / 3)."""
    from prognos.models.network import SequenceNet

    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"n_channels": 3, "hidden": 8, "layers": 2, "dropout": 0.0}
    pooled = SequenceNet(arch, window=12, pool=3, **kwargs).eval()  # type: ignore[arg-type]
    plain = SequenceNet(arch, window=4, **kwargs).eval()  # type: ignore[arg-type]
    plain.load_state_dict(pooled.state_dict())  # strict: same layers, the same dilations
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(5, 12, 3)).astype(np.float32))
    lengths = torch.tensor([12, 9, 6, 3, 12])
    with torch.no_grad():
        got = pooled(x, lengths)
        expected = plain(x.reshape(5, 4, 3, 3).mean(dim=2), lengths // 3)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_pooled_receptive_field_covers_the_pooled_window() -> None:
    from prognos.models.network import SequenceNet

    def blocks(window: int, pool: int) -> list[int]:
        return SequenceNet("cnn", 2, window, 4, 2, 0.0, pool=pool).dilations

    assert blocks(150, 1) == [1, 2, 4, 8, 16, 32, 64]  # field 255 >= 150
    assert blocks(150, 3) == blocks(50, 1) == [1, 2, 4, 8, 16]  # field 63 >= 50
    assert blocks(151, 3) == blocks(51, 1)  # the short oldest group counts
    with pytest.raises(ValueError, match="pool"):
        SequenceNet("cnn", 2, 8, 4, 2, 0.0, pool=0)


@pytest.fixture(scope="module")
def pooled(fleet: Fleet) -> SequenceModel:
    # WINDOW 20 pooled by 3: 7 steps, the oldest of 2 readings.
    return SequenceModel(arch="cnn", pool=3, **FAST).fit(*fleet.train)


def test_pooled_model_learns_and_ignores_padding(pooled: SequenceModel, fleet: Fleet) -> None:
    X, y = fleet.test
    rul, proba = pooled.predict_rul_and_proba(X)
    assert pooled.net_.pool == 3
    assert pearsonr(rul, y.rul).statistic > 0.8
    assert roc_auc_score(y.failed, proba) > 0.95
    short = X.take(np.flatnonzero(X.lengths < WINDOW))
    pad = np.arange(WINDOW)[None, :] < (WINDOW - short.lengths)[:, None]
    noisy = short.sequences.copy()
    noisy[pad] = np.random.default_rng(0).normal(0, 50, size=noisy[pad].shape)
    garbage = replace(short, sequences=noisy)
    clean = pooled.predict_rul_and_proba(short)
    moved = pooled.predict_rul_and_proba(garbage)
    assert np.array_equal(clean[0], moved[0]) and np.array_equal(clean[1], moved[1])
    # The explanation (DeepLift over the raw window) still adds up, and padding earns nothing.
    terms, base = pooled.attributions(short)
    np.testing.assert_array_equal(terms, pooled.attributions(garbage)[0])
    p = clean[1]
    assert base + terms.sum(axis=1) == pytest.approx(np.log(p) - np.log1p(-p), abs=1e-6)


def test_pooled_deeplift_is_complete_and_captums(pooled: SequenceModel, fleet: Fleet) -> None:
    from prognos.models.attribution import deeplift, deeplift_reference

    X, _ = fleet.test
    X = X.take(np.arange(0, len(X), 7))
    offset = float(np.log(pooled.pos_weight_))
    ours = deeplift(pooled.net_, X.sequences, X.lengths, offset)
    assert np.abs(ours.delta).max() < 1e-5  # complete before closing: pooling is linear
    captum = deeplift_reference(pooled.net_, X.sequences, X.lengths, offset)
    scale = max(float(np.abs(captum.raw).max()), 1.0)
    np.testing.assert_allclose(ours.raw, captum.raw, rtol=0, atol=1e-6 * scale)


def test_clone_and_pickle_keep_pool(pooled: SequenceModel, fleet: Fleet) -> None:
    X, _ = fleet.test
    assert pooled.get_params()["pool"] == 3
    twin = clone(pooled)
    assert twin.pool == 3 and not hasattr(twin, "net_")
    restored = pickle.loads(pickle.dumps(pooled))
    assert restored.pool == 3 and restored.net_.pool == 3
    assert np.array_equal(restored.predict_rul(X), pooled.predict_rul(X))
    assert np.array_equal(restored.predict_proba(X), pooled.predict_proba(X))
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="pool"):
            SequenceModel(pool=bad).fit(*_small(fleet))  # type: ignore[arg-type]
