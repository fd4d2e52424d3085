"""Fleet specs: what a fleet's data looks like and how its labels are derived.

Loaders rename source columns to the canonical names below, so everything downstream (validation,
labels, features, models) works with ``asset_id``, ``time``, the setting names and the sensor names
of the spec, whatever the source called them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prognos.errors import ConfigError

ASSET = "asset_id"
TIME = "time"


class SensorSpec(BaseModel):
    """One measured channel; ``min``/``max`` bound physically plausible values when known."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: str | None = Field(default=None, description="Column name in the source, if different.")
    unit: str | None = None
    description: str | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> SensorSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"sensor {self.name!r}: min {self.min} > max {self.max}")
        return self

    @property
    def source_name(self) -> str:
        return self.source or self.name


class LabelSpec(BaseModel):
    """How training labels are derived from the data."""

    model_config = ConfigDict(extra="forbid")

    shape: Literal["run_to_failure", "event_log"] = "run_to_failure"
    rul_cap: int = Field(default=125, gt=0, description="Piecewise-linear RUL cap.")
    horizon: int = Field(default=30, gt=0, description="H in 'fails within H'.")
    failure_events: list[str] = Field(default_factory=lambda: ["failure"])
    reset_events: list[str] = Field(
        default_factory=lambda: ["repair", "replacement", "maintenance"],
        description="Events that reset degradation: rows before them are censored at that time.",
    )
    censored_as_healthy: bool = Field(
        default=False,
        description="Label censored rows without a full horizon of follow-up as healthy (biased).",
    )


class FleetSpec(BaseModel):
    """Columns, plausible ranges and label rules of one fleet."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    asset_column: str = Field(default=ASSET, description="Source column holding the asset id.")
    time_column: str = Field(default=TIME, description="Source column holding the cycle or time.")
    time_kind: Literal["cycle", "timestamp"] = "cycle"
    settings: list[SensorSpec] = Field(default_factory=list)
    sensors: list[SensorSpec] = Field(min_length=1)
    labels: LabelSpec = Field(default_factory=LabelSpec)

    @model_validator(mode="after")
    def _names_are_unique(self) -> FleetSpec:
        names = [ASSET, TIME, *self.setting_names, *self.sensor_names]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"column names used twice in fleet spec: {duplicates}")
        return self

    @property
    def setting_names(self) -> list[str]:
        return [s.name for s in self.settings]

    @property
    def sensor_names(self) -> list[str]:
        return [s.name for s in self.sensors]

    @property
    def columns(self) -> list[str]:
        """Canonical column order of a readings frame."""
        return [ASSET, TIME, *self.setting_names, *self.sensor_names]

    def rename_map(self) -> dict[str, str]:
        """Source column name -> canonical name."""
        mapping = {self.asset_column: ASSET, self.time_column: TIME}
        for channel in (*self.settings, *self.sensors):
            mapping[channel.source_name] = channel.name
        return mapping

    def channel(self, name: str) -> SensorSpec:
        for channel in (*self.settings, *self.sensors):
            if channel.name == name:
                return channel
        raise KeyError(name)

    @classmethod
    def from_yaml(cls, path: str | Path) -> FleetSpec:
        return load_yaml_model(cls, path)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(model: type[M], path: str | Path) -> M:
    """Load and validate a pydantic model from YAML, naming the file in every error."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid {model.__name__}:\n{exc}") from exc


# (name, unit, description, plausible min, plausible max). Bounds are physical envelopes of a
# turbofan (generous), not the observed extremes: they catch corrupted values, not degradation.
_CMAPSS_SENSORS: list[tuple[str, str, str, float, float]] = [
    ("T2", "degR", "total temperature at fan inlet", 350.0, 700.0),
    ("T24", "degR", "total temperature at LPC outlet", 400.0, 900.0),
    ("T30", "degR", "total temperature at HPC outlet", 900.0, 2200.0),
    ("T50", "degR", "total temperature at LPT outlet", 800.0, 2200.0),
    ("P2", "psia", "pressure at fan inlet", 0.0, 30.0),
    ("P15", "psia", "total pressure in bypass duct", 0.0, 50.0),
    ("P30", "psia", "total pressure at HPC outlet", 0.0, 1000.0),
    ("Nf", "rpm", "physical fan speed", 0.0, 3500.0),
    ("Nc", "rpm", "physical core speed", 0.0, 12000.0),
    ("epr", "-", "engine pressure ratio (P50/P2)", 0.0, 5.0),
    ("Ps30", "psia", "static pressure at HPC outlet", 0.0, 200.0),
    ("phi", "pps/psi", "ratio of fuel flow to Ps30", 0.0, 1000.0),
    ("NRf", "rpm", "corrected fan speed", 0.0, 3500.0),
    ("NRc", "rpm", "corrected core speed", 0.0, 12000.0),
    ("BPR", "-", "bypass ratio", 0.0, 30.0),
    ("farB", "-", "burner fuel-air ratio", 0.0, 1.0),
    ("htBleed", "-", "bleed enthalpy", 0.0, 1000.0),
    ("Nf_dmd", "rpm", "demanded fan speed", 0.0, 3500.0),
    ("PCNfR_dmd", "%", "demanded corrected fan speed", 0.0, 150.0),
    ("W31", "lbm/s", "HPT coolant bleed", 0.0, 100.0),
    ("W32", "lbm/s", "LPT coolant bleed", 0.0, 100.0),
]

CMAPSS_COLUMNS = [
    "unit",
    "cycle",
    "setting_1",
    "setting_2",
    "setting_3",
    *[f"sensor_{i}" for i in range(1, 22)],
]


def cmapss_spec(name: str = "cmapss") -> FleetSpec:
    """The built-in spec of NASA's C-MAPSS FD001-FD004 text format (run-to-failure)."""
    return FleetSpec(
        name=name,
        asset_column="unit",
        time_column="cycle",
        time_kind="cycle",
        settings=[
            SensorSpec(name="setting_1", unit="kft", description="altitude", min=-1.0, max=50.0),
            SensorSpec(name="setting_2", unit="Mach", description="Mach number", min=-0.1, max=1.0),
            SensorSpec(
                name="setting_3",
                unit="%",
                description="throttle resolver angle",
                min=0.0,
                max=120.0,
            ),
        ],
        sensors=[
            SensorSpec(
                name=f"sensor_{i}", unit=unit, description=f"{short}: {desc}", min=lo, max=hi
            )
            for i, (short, unit, desc, lo, hi) in enumerate(_CMAPSS_SENSORS, start=1)
        ],
        labels=LabelSpec(shape="run_to_failure"),
    )
