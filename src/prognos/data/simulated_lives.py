"""The simulated assets' lives: when each degrades, how its damage grows, when it fails or is
maintained, and so the per-row ground truth and (telemetry mode) the event log.

This is the part of :mod:`prognos.data.simulator` that depends on ``seed`` (the assets) rather than
``design_seed`` (the physics): the simulator draws the sensors on top of these rows. Damage is 0
until a random onset, then grows exponentially to exactly 1 at the failure cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from prognos.fleet import ASSET, TIME

_ONSET_FRACTION = (0.25, 0.7)  # degradation starts at this fraction of the life
_CURVATURE = (2.0, 5.0)  # exponent of the damage growth; larger = later, sharper knee


class LifeConfig(Protocol):
    """What the lives need of a :class:`~prognos.data.simulator.SimulatorConfig`."""

    n_assets: int
    fault_modes: int
    min_life: int
    max_life: int
    horizon: int
    maintenance_rate: float


def fault_mode_names(config: LifeConfig) -> list[str]:
    """The fault modes' names (``fault_1``...), as the event log and ``meta`` give them."""
    return [f"fault_{m}" for m in range(1, config.fault_modes + 1)]


@dataclass
class _Lives:
    """What each life drew (arrays of the shape asked for, one entry per life)."""

    length: np.ndarray  # cycles from new to failure
    onset: np.ndarray  # last cycle with zero damage
    curvature: np.ndarray
    mode: np.ndarray


def _draw_lives(rng: np.random.Generator, config: LifeConfig, shape: tuple[int, ...]) -> _Lives:
    length = rng.integers(config.min_life, config.max_life + 1, size=shape)
    fraction = rng.uniform(*_ONSET_FRACTION, size=shape)
    onset = np.clip(np.floor(fraction * length).astype(np.int64), 1, length - 1)
    curvature = rng.uniform(*_CURVATURE, size=shape)
    mode = rng.integers(0, config.fault_modes, size=shape)
    return _Lives(length=length, onset=onset, curvature=curvature, mode=mode)


def _damage(age: np.ndarray, length: np.ndarray, onset: np.ndarray, a: np.ndarray) -> np.ndarray:
    """0 up to the onset, then exponential growth reaching exactly 1 at ``age == length``."""
    progress = np.maximum(age - onset, 0) / (length - onset)
    return np.expm1(a * progress) / np.expm1(a)


@dataclass
class Rows:
    """Per-row ground truth before the sensors are drawn."""

    asset: np.ndarray  # 0-based asset index
    time: np.ndarray
    damage: np.ndarray
    mode: np.ndarray
    life: np.ndarray  # 0-based life index within the asset
    latent_rul: np.ndarray  # cycles until damage would reach 1, ignoring maintenance


def run_to_failure_rows(rng: np.random.Generator, config: LifeConfig) -> Rows:
    """One life per asset, observed from new to failure."""
    lives = _draw_lives(rng, config, (config.n_assets,))
    asset = np.repeat(np.arange(config.n_assets), lives.length)
    starts = np.cumsum(lives.length) - lives.length
    time = np.arange(asset.size, dtype=np.int64) - starts[asset] + 1
    length = lives.length[asset]
    damage = _damage(time, length, lives.onset[asset], lives.curvature[asset])
    return Rows(
        asset=asset,
        time=time,
        damage=damage,
        mode=lives.mode[asset],
        life=np.zeros(asset.size, dtype=np.int64),
        latent_rul=length - time,
    )


def telemetry_rows(rng: np.random.Generator, config: LifeConfig) -> tuple[Rows, pd.DataFrame]:
    """``horizon`` cycles per asset, entered in service at a random age, lives cut by failure
    (then repair) or preventive maintenance; and the event log of those ends."""
    n, horizon = config.n_assets, config.horizon
    # Enough lives per asset to cover the horizon even if every life is cut at its earliest.
    shortest = max(1, math.floor(_ONSET_FRACTION[0] * config.min_life)) + 1
    n_lives = math.ceil(horizon / shortest) + 1
    lives = _draw_lives(rng, config, (n, n_lives))
    if config.maintenance_rate > 0:
        maintenance_age = lives.onset + rng.geometric(config.maintenance_rate, size=(n, n_lives))
    else:
        maintenance_age = lives.length + 1
    maintained = maintenance_age < lives.length
    end_age = np.where(maintained, maintenance_age, lives.length)
    # Assets enter observation already in service, at a random age before their first onset.
    initial_age = np.floor(rng.uniform(size=n) * lives.onset[:, 0]).astype(np.int64)
    visible = end_age.copy()
    visible[:, 0] -= initial_age
    ends = np.cumsum(visible, axis=1)  # time of the last reading of each life
    if (ends[:, -1] < horizon).any():  # pragma: no cover - guaranteed by n_lives
        raise RuntimeError("simulator drew too few lives to cover the horizon")

    asset = np.repeat(np.arange(n), horizon)
    time = np.tile(np.arange(1, horizon + 1, dtype=np.int64), n)
    # Life of each row: how many lives of its asset ended before it (one flat searchsorted).
    stride = int(ends[:, -1].max()) + horizon + 1
    keys = (ends + (np.arange(n) * stride)[:, None]).ravel()
    life = np.searchsorted(keys, time + asset * stride, side="left") - asset * n_lives
    flat = asset * n_lives + life
    start = (ends - visible).ravel()[flat]  # time before the first reading of the life
    age = time - start + np.where(life == 0, initial_age[asset], 0)
    length = lives.length.ravel()[flat]
    damage = _damage(age, length, lives.onset.ravel()[flat], lives.curvature.ravel()[flat])
    rows = Rows(
        asset=asset,
        time=time,
        damage=damage,
        mode=lives.mode.ravel()[flat],
        life=life,
        latent_rul=length - age,
    )

    done = ends <= horizon
    ev_asset = np.nonzero(done)[0]
    ev_time = ends[done]
    ev_mode = lives.mode[done]
    failed = ~maintained[done]
    names = np.array(fault_mode_names(config))
    parts = [
        (ev_asset[failed], ev_time[failed], "failure", ev_mode[failed], 0),
        (ev_asset[failed], ev_time[failed], "repair", ev_mode[failed], 1),
        (ev_asset[~failed], ev_time[~failed], "maintenance", ev_mode[~failed], 0),
    ]
    a = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    kind = np.concatenate([np.full(p[0].size, p[2], dtype=object) for p in parts])
    comp = np.concatenate([names[p[3]] for p in parts])
    rank = np.concatenate([np.full(p[0].size, p[4]) for p in parts])
    order = np.lexsort((rank, t, a))
    events = pd.DataFrame(
        {
            ASSET: (a[order] + 1).astype(np.int64),
            TIME: t[order].astype(np.int64),
            "event": kind[order].astype(str),
            "component": comp[order].astype(str),
        }
    )
    return rows, events
