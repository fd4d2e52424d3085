"""Alert rules: one validated YAML (the shipped ``rules.yaml``, or ``PROGNOS_ALERT_RULES``).

A *rule* compares a fleet- or service-level signal with a threshold; an *asset rule* watches each
asset's latest prediction. Both say how long the condition must hold (``for``) before the alert
fires, and how severe it is. The same file drives prognos's own evaluator and the Prometheus
rules generated from it, so the two never disagree.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from prognos.config import Settings
from prognos.fleet import load_yaml_model

__all__ = [
    "DEFAULT_RULES",
    "AssetRule",
    "Rule",
    "RuleSet",
    "format_duration",
    "load_rules",
    "parse_duration",
]

DEFAULT_RULES = Path(__file__).resolve().with_name("rules.yaml")

Severity = Literal["critical", "warning"]
Comparison = Literal["<", "<=", ">", ">="]
# Signals prognos computes from its database (see :mod:`prognos.alerting.signals`).
Signal = Literal[
    "realised_f2",
    "prediction_psi",
    "drift_share",
    "latency_p95_ms",
    "seconds_since_last_request",
    "ingestion_delay_seconds",
    "training_failures_in_a_row",
]
AssetSignal = Literal["should_inspect", "rul_lower"]

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(?:\d+[smhd])+")


def parse_duration(value: object) -> float:
    """``"24h"``, ``"10m"``, ``"1h30m"``, ``"0s"`` (or a number of seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10m, 24h, 0s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        parts = re.findall(r"(\d+)([smhd])", value.strip())
        seconds = float(sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    else:
        raise ValueError(f"expected a duration such as 10m, 24h, 0s, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and not negative, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest exact Prometheus duration: 86400 -> ``1d``, 5400 -> ``1h30m``."""
    left = round(seconds)
    if left == 0:
        return "0s"
    out = []
    for unit, size in sorted(_UNIT_SECONDS.items(), key=lambda item: -item[1]):
        count, left = divmod(left, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]  # also a Prometheus alert name


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Name
    severity: Severity
    for_seconds: Duration = Field(default=0.0, alias="for")
    description: str = ""


class Rule(_Base):
    """``signal comparison threshold`` held for ``for``: e.g. ``realised_f2 < 0.75`` for 24h."""

    signal: Signal
    comparison: Comparison
    threshold: float = Field(allow_inf_nan=False)
    # The recent stretch a windowed signal is computed over (the p95 latency's).
    window_seconds: Duration = Field(default=300.0, alias="window", gt=0)

    def holds(self, value: float) -> bool:
        return {
            "<": value < self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            ">=": value >= self.threshold,
        }[self.comparison]


class AssetRule(_Base):
    """One alert per asset: its latest prediction recommends an inspection (the cost-optimal
    threshold crossed: ``should_inspect``), or its RUL interval's lower bound is below
    ``lead_time`` (in the fleet's RUL unit: cycles, or hours for timestamped fleets)."""

    signal: AssetSignal
    lead_time: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _lead_time_for_rul(self) -> AssetRule:
        if self.signal == "rul_lower" and self.lead_time is None:
            raise ValueError("lead_time is required for signal rul_lower")
        if self.signal == "should_inspect" and self.lead_time is not None:
            raise ValueError("lead_time only applies to signal rul_lower")
        return self

    @property
    def comparison(self) -> str:
        return "<" if self.signal == "rul_lower" else ">="

    @property
    def threshold(self) -> float | None:
        return self.lead_time


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list)
    asset_rules: list[AssetRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        seen: set[str] = set()
        for rule in (*self.rules, *self.asset_rules):
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    def get(self, name: str) -> Rule | AssetRule | None:
        every: list[Rule | AssetRule] = [*self.rules, *self.asset_rules]
        return next((r for r in every if r.name == name), None)


def load_rules(settings: Settings | None = None, path: Path | None = None) -> RuleSet:
    """``path``, else ``settings.alert_rules``, else the shipped defaults; a
    :class:`~prognos.errors.ConfigError` naming the file and the field when invalid."""
    chosen = path or (settings.alert_rules if settings is not None else None) or DEFAULT_RULES
    return load_yaml_model(RuleSet, chosen)
