"""Synthetic fleets with known ground truth, for tests, demos, benchmarks and live-stream drills.

Real data (C-MAPSS) is fixed in size and has no event log and no latent truth; the simulator gives
fleets of any size, both data shapes (run-to-failure and telemetry with an event log) and the latent
damage behind every reading, so the rest of the platform can be checked against the truth.

The model, per reading of asset *i* at cycle *t* and sensor *j*::

    value = base_j + regime_shift[regime_t, j] + offset_ij
            + damage_it * weight[fault_mode, j] * scale_j + noise * scale_j * N(0, 1)

``damage`` is 0 until a random onset (a fraction of the life), then grows exponentially to
exactly 1 at the failure cycle (the lives are drawn in :mod:`prognos.data.simulated_lives`). Only
the fault sensors have non-zero weights; the others carry regime and noise only, like the flat
channels of C-MAPSS.

Two seeds: ``design_seed`` fixes the fleet's physics (sensor baselines, regime shifts, fault
signatures, hence the spec), ``seed`` draws the assets. Two configs that differ only in ``seed``
are two fleets of the same kind: train on one, stream the other.

Event timing (telemetry mode): an event at time *t* happens *after* the reading at *t*. A failure
at *t* means damage reached 1 at the reading at *t*; a ``repair`` event follows at the same *t* and
the next life starts at *t + 1* with damage 0. A ``maintenance`` event at *t* likewise resets the
damage from *t + 1* on. Readings are gap-free: *t* counts operating cycles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prognos.data.dataset import FleetData
from prognos.data.simulated_lives import (
    fault_mode_names,
    run_to_failure_rows,
    telemetry_rows,
)
from prognos.fleet import ASSET, TIME, FleetSpec, LabelSpec, SensorSpec, load_yaml_model

__all__ = [
    "EVENT_COLUMNS",
    "SETTING_NAMES",
    "SimulatorConfig",
    "simulate_fleet",
    "simulated_spec",
    "stream_readings",
]

SETTING_NAMES = ("setting_1", "setting_2", "setting_3")
EVENT_COLUMNS = [ASSET, TIME, "event", "component"]

# The six operating conditions of C-MAPSS FD002/FD004 (altitude kft, Mach, throttle angle %):
# realistic regime points; more regimes than six are drawn inside the same envelope.
_CMAPSS_REGIMES = np.array(
    [
        [0.0, 0.0, 100.0],
        [10.0, 0.25, 100.0],
        [20.0, 0.70, 100.0],
        [25.0, 0.62, 60.0],
        [35.0, 0.84, 100.0],
        [42.0, 0.84, 100.0],
    ]
)
_REGIME_ENVELOPE = np.array([[0.0, 42.0], [0.0, 0.84], [20.0, 100.0]])
_SETTING_JITTER = np.array([0.002, 0.0002, 0.005])  # std of the setting noise around a regime

# Sensor families cycled over sensor_1..n: (unit, kind, baseline range at the reference regime).
_SENSOR_KINDS: list[tuple[str, str, float, float]] = [
    ("degR", "temperature", 500.0, 1600.0),
    ("psia", "pressure", 10.0, 600.0),
    ("rpm", "shaft speed", 2000.0, 9500.0),
    ("-", "ratio", 1.0, 10.0),
    ("lbm/s", "flow", 10.0, 50.0),
]
_SCALE_OF_BASE = (0.01, 0.03)  # degradation scale of a sensor, as a fraction of its baseline
_REGIME_SHIFT_OF_BASE = 0.2  # regime shifts are up to this fraction of the baseline
_WEIGHT_RANGE = (0.4, 1.0)  # |shift at failure| of a fault sensor, in units of its scale
_OFFSET_STD = 0.3  # per-asset manufacturing offset, in units of scale, clipped at 3 std
_DESIGN_SALT = 0x5EED_F1EE7  # keeps the design stream apart from the asset stream


class SimulatorConfig(BaseModel):
    """What fleet to simulate; validated so a bad YAML fails at load, not mid-simulation."""

    model_config = ConfigDict(extra="forbid")

    n_assets: int = Field(default=100, gt=0)
    seed: int = Field(default=0, description="Draws the assets (lives, noise, regimes, events).")
    design_seed: int = Field(
        default=0, description="Fixes the fleet's physics and spec; share it across train/live."
    )
    mode: Literal["run_to_failure", "telemetry"] = "run_to_failure"
    n_sensors: int = Field(default=12, ge=2)
    n_fault_sensors: int = Field(
        default=6, ge=1, description="Sensors that respond to degradation; the rest do not."
    )
    n_regimes: int = Field(default=3, ge=1, description="Operating conditions (settings points).")
    fault_modes: int = Field(
        default=1, ge=1, description="Each life draws one; each moves its own fault-sensor mix."
    )
    noise: float = Field(
        default=0.05, ge=0.0, description="Noise std as a fraction of each sensor's scale."
    )
    min_life: int = Field(default=120, ge=2, description="Fewest cycles from new to failure.")
    max_life: int = Field(default=350, ge=2, description="Most cycles from new to failure.")
    horizon: int = Field(default=400, gt=0, description="Telemetry: cycles observed per asset.")
    maintenance_rate: float = Field(
        default=0.005,
        ge=0.0,
        le=1.0,
        description="Telemetry: per-cycle chance of preventive maintenance once degrading.",
    )
    name: str = Field(default="simulated", pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _consistent(self) -> SimulatorConfig:
        if self.n_fault_sensors > self.n_sensors:
            raise ValueError(
                f"n_fault_sensors ({self.n_fault_sensors}) > n_sensors ({self.n_sensors})"
            )
        if self.min_life > self.max_life:
            raise ValueError(f"min_life ({self.min_life}) > max_life ({self.max_life})")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> SimulatorConfig:
        """Load from YAML; errors are :class:`~prognos.errors.ConfigError` naming the file."""
        return load_yaml_model(cls, path)


@dataclass(frozen=True)
class _Design:
    """The fleet's physics: everything that depends on ``design_seed`` and the shape only."""

    regimes: np.ndarray  # (R, 3) settings point of each regime
    base: np.ndarray  # (S,) baseline at the reference regime
    scale: np.ndarray  # (S,) degradation scale
    regime_shift: np.ndarray  # (R, S) additive shift of each regime
    weights: np.ndarray  # (M, S) shift at failure in units of scale; 0 for non-fault sensors
    fault_idx: np.ndarray  # indices of the fault sensors
    kinds: list[tuple[str, str]]  # (unit, kind) per sensor


def _design(config: SimulatorConfig) -> _Design:
    shape = (config.n_sensors, config.n_fault_sensors, config.n_regimes, config.fault_modes)
    rng = np.random.default_rng([_DESIGN_SALT, config.design_seed, *shape])
    n_sensors, n_fault, n_regimes, n_modes = shape

    extra = max(0, n_regimes - len(_CMAPSS_REGIMES))
    drawn = rng.uniform(_REGIME_ENVELOPE[:, 0], _REGIME_ENVELOPE[:, 1], size=(extra, 3))
    regimes = np.vstack([_CMAPSS_REGIMES[:n_regimes], drawn])

    kinds = [_SENSOR_KINDS[j % len(_SENSOR_KINDS)] for j in range(n_sensors)]
    lo = np.array([k[2] for k in kinds])
    hi = np.array([k[3] for k in kinds])
    base = rng.uniform(lo, hi)
    scale = base * rng.uniform(*_SCALE_OF_BASE, size=n_sensors)
    regime_shift = base * rng.uniform(
        -_REGIME_SHIFT_OF_BASE, _REGIME_SHIFT_OF_BASE, size=(n_regimes, n_sensors)
    )

    fault_idx = np.sort(rng.choice(n_sensors, size=n_fault, replace=False))
    signs = rng.choice(np.array([-1.0, 1.0]), size=n_fault)  # a sensor's direction is physical
    members = np.ones((n_modes, n_fault), dtype=bool)
    if n_modes > 1:
        k = max(1, math.ceil(2 * n_fault / 3))
        members[:] = False
        for m in range(n_modes):
            members[m, rng.choice(n_fault, size=k, replace=False)] = True
        for f in np.flatnonzero(~members.any(axis=0)):  # every fault sensor serves some mode
            members[f % n_modes, f] = True
    magnitude = rng.uniform(*_WEIGHT_RANGE, size=(n_modes, n_fault))
    weights = np.zeros((n_modes, n_sensors))
    weights[:, fault_idx] = np.where(members, signs * magnitude, 0.0)

    return _Design(
        regimes=regimes,
        base=base,
        scale=scale,
        regime_shift=regime_shift,
        weights=weights,
        fault_idx=fault_idx,
        kinds=[(k[0], k[1]) for k in kinds],
    )


def _sensor_names(config: SimulatorConfig) -> list[str]:
    return [f"sensor_{j}" for j in range(1, config.n_sensors + 1)]


def simulated_spec(config: SimulatorConfig) -> FleetSpec:
    """The spec of a simulated fleet; bounds are wide enough that clean data never breaks them."""
    design = _design(config)
    # Worst case beyond the regime extremes: offset (<= 0.9) + failure shift (<= 1.0) in scale
    # units, plus 12 noise stds; generous on top so only corrupted values fall outside.
    margin = design.scale * (3.0 + 12.0 * config.noise)
    level = design.base + design.regime_shift
    lo = np.floor((level.min(axis=0) - margin) * 100.0) / 100.0
    hi = np.ceil((level.max(axis=0) + margin) * 100.0) / 100.0
    # Descriptions do not say which sensors degrade: that truth stays in ``meta``, as in real data.
    sensors = [
        SensorSpec(
            name=name,
            unit=unit,
            description=f"simulated {kind}",
            min=float(lo[j]),
            max=float(hi[j]),
        )
        for j, (name, (unit, kind)) in enumerate(
            zip(_sensor_names(config), design.kinds, strict=True)
        )
    ]
    settings = [
        SensorSpec(name="setting_1", unit="kft", description="altitude", min=-1.0, max=50.0),
        SensorSpec(name="setting_2", unit="Mach", description="Mach number", min=-0.1, max=1.0),
        SensorSpec(
            name="setting_3", unit="%", description="throttle resolver angle", min=0.0, max=120.0
        ),
    ]
    shape: Literal["run_to_failure", "event_log"] = (
        "run_to_failure" if config.mode == "run_to_failure" else "event_log"
    )
    return FleetSpec(
        name=config.name,
        time_kind="cycle",
        settings=settings,
        sensors=sensors,
        labels=LabelSpec(shape=shape),
    )


def simulate_fleet(config: SimulatorConfig) -> FleetData:
    """Simulate a whole fleet at once (vectorised; deterministic for a config).

    ``meta`` carries the ground truth aligned with ``readings`` rows: ``health`` (the latent
    damage level despite the name: 0 = as new, 1 = failure), ``latent_rul`` (cycles until damage
    would reach 1, ignoring maintenance), ``fault_mode`` (names), ``regime`` (0-based), ``life``
    (0-based per asset); plus ``fault_sensors``, ``fault_weights`` (mode -> sensor -> shift at
    failure in scale units), ``regimes`` (settings point per regime) and ``config``.
    """
    design = _design(config)
    rng = np.random.default_rng(config.seed)
    events: pd.DataFrame | None = None
    if config.mode == "run_to_failure":
        rows = run_to_failure_rows(rng, config)
    else:
        rows, events = telemetry_rows(rng, config)

    n_rows, n_sensors = rows.asset.size, config.n_sensors
    offset = (
        design.scale
        * np.clip(rng.standard_normal((config.n_assets, n_sensors)), -3.0, 3.0)
        * _OFFSET_STD
    )
    regime = rng.integers(0, config.n_regimes, size=n_rows)

    # One float block, channel-major (settings then sensors), filled row by row in place: each
    # channel is contiguous, and pandas takes the block as is (no per-column copies).
    block = np.empty((3 + n_sensors, n_rows))
    rng.standard_normal(out=block)
    block[:3] *= _SETTING_JITTER[:, None]
    block[3:] *= (config.noise * design.scale)[:, None]
    level = design.base + design.regime_shift  # (R, S)
    shift = design.weights * design.scale  # (M, S) at failure
    tmp = np.empty(n_rows)
    is_fault = set(design.fault_idx.tolist())
    for k in range(3):
        block[k] += np.take(design.regimes[:, k], regime, out=tmp)
    for j in range(n_sensors):
        row = block[3 + j]
        row += np.take(level[:, j], regime, out=tmp)
        row += np.take(offset[:, j], rows.asset, out=tmp)
        if j in is_fault:
            row += np.multiply(rows.damage, np.take(shift[:, j], rows.mode, out=tmp), out=tmp)

    spec = simulated_spec(config)
    readings = pd.DataFrame(block.T, columns=spec.columns[2:], copy=False)
    readings.insert(0, TIME, rows.time.astype(np.int64, copy=False))
    readings.insert(0, ASSET, (rows.asset + 1).astype(np.int64, copy=False))

    sensor_names = spec.sensor_names
    fault = design.fault_idx.tolist()
    mode_names = fault_mode_names(config)
    meta: dict[str, object] = {
        "health": rows.damage,
        "latent_rul": rows.latent_rul.astype(np.int64),
        "fault_mode": np.array(mode_names)[rows.mode],
        "regime": regime,
        "life": rows.life.astype(np.int64),
        "fault_sensors": [sensor_names[j] for j in fault],
        "fault_weights": {
            mode_names[m]: {
                sensor_names[j]: float(design.weights[m, j]) for j in fault if design.weights[m, j]
            }
            for m in range(config.fault_modes)
        },
        "regimes": design.regimes.tolist(),
        "config": config.model_dump(),
    }
    source = f"sim:n_assets={config.n_assets},seed={config.seed},mode={config.mode}"
    return FleetData(
        readings=readings,
        spec=spec,
        source=source,
        events=events,
        run_to_failure=config.mode == "run_to_failure",
        meta=meta,
    )


_STREAM_CHUNK = 65_536


def stream_readings(config: SimulatorConfig) -> Iterator[dict[str, object]]:
    """Yield the fleet's readings one at a time, as a live feed would: cycle by cycle, all assets.

    Same values as ``simulate_fleet(config).readings``; within a cycle assets come in id order and
    an asset drops out after its last reading. Lazy: nothing is computed before the first ``next``.
    """
    readings = simulate_fleet(config).readings
    names = list(readings.columns)
    arrays = [readings[name].to_numpy() for name in names]
    order = np.lexsort((arrays[0], arrays[1]))  # by time, then asset
    for begin in range(0, order.size, _STREAM_CHUNK):
        chunk = order[begin : begin + _STREAM_CHUNK]
        columns = [array[chunk].tolist() for array in arrays]
        for row in zip(*columns, strict=True):
            yield dict(zip(names, row, strict=True))
