"""Which flows ``prognos flows serve`` registers, with what schedule and parameters: declared here,
without Prefect, so ``prognos flows list`` answers at once and with no server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prognos.config import Settings

__all__ = ["FLOWS", "NO_SERVER", "Planned", "planned"]

NO_SERVER = (
    "PREFECT_API_URL is not set: start a server with `prefect server start`, then "
    "PREFECT_API_URL=http://127.0.0.1:4200/api prognos flows serve"
)

# flow -> what it does (the Prefect flow name is ``prognos-<flow>``)
FLOWS: dict[str, str] = {
    "ingest": "batch ingest: validate a source, store its valid readings, quarantine the rest",
    "train": "train, register and gate a model on a source (on demand: give source=)",
    "monitor": "one live monitoring run of the champion (quality, drift, performance)",
    "retrain": "retrain when a trigger holds (drift, weak realised F2, new labels)",
    "gate": "judge a shadowed challenger on live outcomes: promote, reject or wait",
    "lake-export": "append the stored readings to the Parquet lake (idempotent, per fleet)",
}


@dataclass(frozen=True)
class Planned:
    """One deployment: its flow, cron (None: run on demand), the parameters each run gets, and
    why it is not registered (``missing``; empty when it is)."""

    flow: str
    cron: str | None
    setting: str | None  # the environment variable the cron comes from
    parameters: dict[str, Any] = field(default_factory=dict)
    missing: str = ""

    @property
    def flow_name(self) -> str:
        return f"prognos-{self.flow}"

    @property
    def deployment_name(self) -> str:
        model = self.parameters.get("name")
        return f"{self.flow}-{model}" if model else self.flow

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow_name,
            "deployment": self.deployment_name,
            "cron": self.cron,
            "setting": self.setting,
            "parameters": self.parameters,
            "registered": not self.missing,
            "missing": self.missing or None,
            "description": FLOWS[self.flow],
        }


def planned(settings: Settings, model: str | None = None) -> list[Planned]:
    """Every flow's deployment for these settings; ``model`` (default ``PROGNOS_MODEL_NAME``)
    is the registered model that monitoring, retraining and the gate follow. Each run gets the
    home as a parameter; the rest of the settings (database, MLflow) come from the environment
    of the serving process, so no secret becomes a Prefect parameter."""
    model = model or settings.model_name
    home = {"home": str(settings.home.resolve())}
    no_model = "" if model else "no model: pass --model or set PROGNOS_MODEL_NAME"
    per_model = {"name": model, **home} if model else home
    source = settings.ingest_source
    return [
        Planned(
            "ingest",
            settings.ingest_schedule,
            "PROGNOS_INGEST_SCHEDULE",
            {"source": source, **home} if source else home,
            "" if source else "no source: set PROGNOS_INGEST_SOURCE=KIND:PATH",
        ),
        Planned("train", None, None, {**home}),
        Planned(
            "monitor", settings.monitor_schedule, "PROGNOS_MONITOR_SCHEDULE", per_model, no_model
        ),
        Planned(
            "retrain", settings.retrain_schedule, "PROGNOS_RETRAIN_SCHEDULE", per_model, no_model
        ),
        Planned("gate", settings.gate_schedule, "PROGNOS_GATE_SCHEDULE", per_model, no_model),
        Planned(
            "lake-export",
            settings.lake_export_schedule,
            "PROGNOS_LAKE_EXPORT_SCHEDULE",
            home,
            "" if settings.lake_url else "no lake: set PROGNOS_LAKE_URL (e.g. $PROGNOS_HOME/lake)",
        ),
    ]
