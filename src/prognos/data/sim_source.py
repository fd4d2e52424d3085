"""The ``sim:`` data source: ``sim:k=v,k=v`` builds a fleet with the simulator, the parameters
being :class:`~prognos.data.simulator.SimulatorConfig` fields (values read as int, float or str).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from prognos.data.dataset import FleetData
from prognos.errors import DataSourceError

__all__ = ["load_sim", "parse_params"]


def load_sim(source: str, params: str) -> FleetData:
    """The simulated fleet ``source`` names (``params``: its part after ``sim:``)."""
    try:
        from prognos.data.simulator import SimulatorConfig, simulate_fleet
    except ImportError as exc:
        raise DataSourceError(f"sim: the simulator is not available: {exc}") from exc
    kwargs = parse_params(params)
    known = set(SimulatorConfig.model_fields)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise DataSourceError(
            f"sim: unknown parameter(s) {unknown} in {source!r}; known: {sorted(known)}"
        )
    try:
        config = SimulatorConfig(**kwargs)
    except ValidationError as exc:
        raise DataSourceError(f"sim: invalid parameters in {source!r}: {exc}") from exc
    data = simulate_fleet(config)
    data.source = source
    data.meta.setdefault("extra_columns", [])
    data.meta.setdefault("sim_config", config.model_dump(mode="json"))
    return data


def parse_params(params: str) -> dict[str, Any]:
    """``"n_assets=50,seed=3,mode=telemetry"`` -> dict; values become int, float or str."""
    out: dict[str, Any] = {}
    for item in params.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise DataSourceError(f"sim: parameter {item.strip()!r} is not key=value")
        if key in out:
            raise DataSourceError(f"sim: parameter {key!r} given twice")
        out[key] = _parse_value(value)
    return out


def _parse_value(value: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
