"""Injected faults: what a live fleet does wrong, so drift monitoring and the stream can be drilled.

A fault is written ``KIND:FIRST-LAST:FROM[:SIZE][:SENSOR]`` (``offset:1-10:50:3:sensor_4``):
assets FIRST..LAST (1-based, in the order assets first appear in the frame) from their FROM-th
reading on (1-based within the asset, inclusive).

Sensor faults change the values (:func:`apply_sensor_faults`); SIZE is in standard deviations of
the sensor across the fleet's healthy first readings (the first :data:`HEALTHY_READINGS` of each
asset), so one SIZE means the same on every sensor and fleet:

- ``offset``: one sensor shifted by SIZE (default 3) standard deviations.
- ``stuck``: one sensor frozen at its value at FROM (takes no SIZE).
- ``noise``: Gaussian noise of SIZE (default 3) standard deviations added to one sensor.
- ``regime``: the operating settings moved to :data:`NEW_REGIME`, a condition the simulator
  never draws (it uses the six C-MAPSS points and, beyond six, random ones), and every sensor
  shifted by SIZE (default 1) standard deviations in a seeded direction per sensor, as a new
  condition moves each sensor by its own amount. The simulator keeps its regime response
  private, so the shift is drawn here in its units rather than read from it.

The sensor of ``offset``/``stuck``/``noise`` defaults to the first sensor column whose healthy
values vary (a constant C-MAPSS channel would make a fault invisible).

Transport faults (``duplicate``, ``reorder``, ``drop``) are applied by the stream publisher to
the messages, not here; their SIZE is a probability per reading (default 0.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

import numpy as np
import pandas as pd

from prognos.errors import ConfigError
from prognos.fleet import ASSET

FaultKind = Literal["offset", "stuck", "noise", "regime", "duplicate", "reorder", "drop"]
SENSOR_FAULTS = ("offset", "stuck", "noise", "regime")
TRANSPORT_FAULTS = ("duplicate", "reorder", "drop")

# Readings per asset that count as healthy when measuring a sensor's spread.
HEALTHY_READINGS = 20
# The operating condition of a ``regime`` fault (altitude kft, Mach, throttle angle %): inside
# the simulator's envelope, away from each of the C-MAPSS points it uses.
NEW_REGIME = (15.0, 0.45, 80.0)
_DEFAULT_SIZE: dict[str, float | None] = {
    "offset": 3.0,
    "stuck": None,
    "noise": 3.0,
    "regime": 1.0,
    "duplicate": 0.1,
    "reorder": 0.1,
    "drop": 0.1,
}
_FORMAT = "KIND:FIRST-LAST:FROM[:SIZE][:SENSOR], e.g. offset:1-10:50:3:sensor_4"


@dataclass(frozen=True)
class Fault:
    """One injected fault; see the module docstring for what each kind does."""

    kind: FaultKind
    first_asset: int
    last_asset: int
    from_reading: int
    size: float | None = None
    sensor: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ConfigError(f"unknown fault kind {self.kind!r}; one of {get_args(FaultKind)}")
        if not 1 <= self.first_asset <= self.last_asset:
            raise ConfigError(
                f"fault {self.kind}: assets {self.first_asset}-{self.last_asset} must be "
                "1-based with FIRST <= LAST"
            )
        if self.from_reading < 1:
            raise ConfigError(f"fault {self.kind}: FROM ({self.from_reading}) must be >= 1")
        if self.size is not None and not math.isfinite(self.size):
            raise ConfigError(f"fault {self.kind}: SIZE must be a finite number")
        if self.kind == "stuck" and self.size is not None:
            raise ConfigError("fault stuck: a frozen sensor takes no SIZE")
        if self.kind == "noise" and self.size is not None and self.size <= 0:
            raise ConfigError(f"fault noise: SIZE ({self.size}) must be > 0")
        if self.kind in TRANSPORT_FAULTS and self.size is not None and not 0 < self.size <= 1:
            raise ConfigError(f"fault {self.kind}: SIZE is a probability in (0, 1]")
        if self.sensor is not None and self.kind not in ("offset", "stuck", "noise"):
            raise ConfigError(f"fault {self.kind}: it names no sensor ({self.sensor!r} given)")

    @property
    def magnitude(self) -> float:
        """SIZE, or the kind's default (0 for ``stuck``, which has none)."""
        if self.size is not None:
            return self.size
        return _DEFAULT_SIZE[self.kind] or 0.0

    def covers(self, asset_number: int) -> bool:
        """Whether the ``asset_number``-th asset (1-based) is affected."""
        return self.first_asset <= asset_number <= self.last_asset


def parse_fault(text: str) -> Fault:
    """``offset:1-10:50:3`` or ``offset:1-10:50:3:sensor_4`` (or ``offset:1-10:50:sensor_4``);
    a :class:`ConfigError` naming the problem otherwise. A single asset may be written ``5``."""
    parts = text.strip().split(":")
    if len(parts) < 3 or len(parts) > 5:
        raise ConfigError(f"fault {text!r}: expected {_FORMAT}")
    kind, assets, start, *rest = parts
    if kind not in get_args(FaultKind):
        raise ConfigError(f"fault {text!r}: unknown kind {kind!r}; one of {get_args(FaultKind)}")
    first_text, _, last_text = assets.partition("-")
    try:
        first = int(first_text)
        last = int(last_text) if last_text else first
    except ValueError:
        raise ConfigError(f"fault {text!r}: assets {assets!r} must be FIRST-LAST") from None
    try:
        from_reading = int(start)
    except ValueError:
        raise ConfigError(f"fault {text!r}: FROM {start!r} must be a reading number") from None
    size: float | None = None
    sensor: str | None = None
    if rest:
        try:
            size = float(rest[0])
        except ValueError:
            if len(rest) == 2:
                raise ConfigError(f"fault {text!r}: SIZE {rest[0]!r} must be a number") from None
            sensor = rest[0]
        if len(rest) == 2:
            sensor = rest[1]
    if sensor is not None and not sensor:
        raise ConfigError(f"fault {text!r}: empty sensor name")
    try:
        return Fault(cast(FaultKind, kind), first, last, from_reading, size, sensor)
    except ConfigError as exc:
        raise ConfigError(f"fault {text!r}: {exc}") from None


def _sensor_columns(readings: pd.DataFrame) -> list[str]:
    return [c for c in readings.columns if str(c).startswith("sensor_")]


def _setting_columns(readings: pd.DataFrame) -> list[str]:
    return [c for c in readings.columns if str(c).startswith("setting_")]


def healthy_std(readings: pd.DataFrame) -> pd.Series:
    """Each sensor's standard deviation across the first :data:`HEALTHY_READINGS` readings of
    every asset: the unit of SIZE."""
    healthy = readings.groupby(ASSET, sort=False).head(HEALTHY_READINGS)
    return healthy[_sensor_columns(readings)].std(ddof=0).fillna(0.0)


def default_sensor(readings: pd.DataFrame) -> str:
    """The first sensor whose healthy values vary."""
    std = healthy_std(readings)
    varying = [str(name) for name, value in std.items() if value > 0]
    if not varying:
        raise ConfigError("no sensor varies in the healthy readings: nothing to fault")
    return varying[0]


def apply_sensor_faults(
    readings: pd.DataFrame, faults: Sequence[Fault], *, seed: int = 0
) -> pd.DataFrame:
    """A copy of ``readings`` with the sensor faults applied in order (transport faults are
    skipped: they act on messages). Deterministic for ``seed``; rows keep their order."""
    sensor_faults = [f for f in faults if f.kind in SENSOR_FAULTS]
    out = readings.copy()
    if not sensor_faults or out.empty:
        return out
    asset_codes, _ = pd.factorize(out[ASSET], sort=False)
    asset_number = asset_codes + 1  # 1-based, in the order assets first appear
    reading_number = out.groupby(ASSET, sort=False).cumcount().to_numpy() + 1
    std = healthy_std(readings)
    for index, fault in enumerate(sensor_faults):
        mask = (
            (asset_number >= fault.first_asset)
            & (asset_number <= fault.last_asset)
            & (reading_number >= fault.from_reading)
        )
        if not mask.any():
            continue
        rng = np.random.default_rng([seed, index])
        if fault.kind == "regime":
            _apply_regime(out, mask, fault, std, rng)
            continue
        sensor = fault.sensor or default_sensor(readings)
        if sensor not in out.columns:
            raise ConfigError(f"fault {fault.kind}: no sensor {sensor!r} in the readings")
        column = out[sensor].to_numpy(dtype=float, copy=True)
        if fault.kind == "offset":
            column[mask] += fault.magnitude * float(std[sensor])
        elif fault.kind == "noise":
            noise = rng.standard_normal(int(mask.sum()))
            column[mask] += noise * fault.magnitude * float(std[sensor])
        else:  # stuck: each asset's value at FROM (its first faulted reading) from then on
            frozen = pd.Series(column).where(mask).groupby(asset_codes).transform("first")
            column[mask] = frozen.to_numpy()[mask]
        out[sensor] = column
    return out


def _apply_regime(
    out: pd.DataFrame, mask: np.ndarray, fault: Fault, std: pd.Series, rng: np.random.Generator
) -> None:
    settings = _setting_columns(out)
    for name, value in zip(settings, NEW_REGIME, strict=False):
        out.loc[mask, name] = value
    sensors = _sensor_columns(out)
    direction = rng.choice(np.array([-1.0, 1.0]), size=len(sensors))
    for sign, name in zip(direction, sensors, strict=True):
        column = out[name].to_numpy(dtype=float, copy=True)
        column[mask] += sign * fault.magnitude * float(std[name])
        out[name] = column
