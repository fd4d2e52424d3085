"""The jobs as Prefect 3 flows, and ``serve_flows``: their deployments with cron schedules,
registered with the Prefect server at ``PREFECT_API_URL`` and run by this process.

Each flow is the plain function the CLI calls, run as one Prefect flow run: one path, whether a
person or a schedule starts it. Flows take plain parameters (a source string, a model name, the
home); the rest of the settings come from the environment of the process that runs them, built at
the start of each run, so no secret is ever a Prefect parameter. Prefect is imported here only:
it takes seconds to import and the plain CLI path must not need it. (The result types are imported
at run time: Prefect reads the flows' annotations to validate parameters.)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, serve
from prefect.schedules import Cron, validate_cron_string

from prognos.config import Settings, get_settings
from prognos.errors import ConfigError
from prognos.flows import jobs
from prognos.flows.ingest import IngestOutcome, ingest
from prognos.flows.promotion import GateVerdict
from prognos.flows.schedules import FLOWS, NO_SERVER, Planned, planned
from prognos.monitoring.live import LiveResult
from prognos.training.flow import TrainOutcome

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "FLOW_FUNCTIONS",
    "deployments",
    "gate_flow",
    "ingest_flow",
    "lake_export_flow",
    "monitor_flow",
    "retrain_flow",
    "serve_flows",
    "train_flow",
]

ACTOR = "prefect"


def _settings(home: str | None) -> Settings:
    return get_settings(home=Path(home)) if home else get_settings()


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


@flow(name="prognos-ingest", description=FLOWS["ingest"])
def ingest_flow(
    source: str, spec: str | None = None, events: str | None = None, home: str | None = None
) -> IngestOutcome:
    return ingest(_settings(home), source, spec=_path(spec), events=_path(events), actor=ACTOR)


@flow(name="prognos-train", description=FLOWS["train"])
def train_flow(
    source: str,
    name: str | None = None,
    config: str | None = None,
    spec: str | None = None,
    events: str | None = None,
    home: str | None = None,
) -> TrainOutcome:
    return jobs.train_source(
        _settings(home),
        source,
        name=name,
        config=_path(config),
        spec=_path(spec),
        events=_path(events),
    )


@flow(name="prognos-monitor", description=FLOWS["monitor"])
def monitor_flow(
    name: str,
    version: str | None = None,
    fleet: str | None = None,
    now: datetime | None = None,
    home: str | None = None,
) -> LiveResult:
    return jobs.monitor(_settings(home), name, version=version, fleet=fleet, now=now)


@flow(name="prognos-retrain", description=FLOWS["retrain"])
def retrain_flow(
    name: str, force: bool = False, reason: str = "on demand", home: str | None = None
) -> jobs.RetrainCheck:
    return jobs.retrain_if_due(_settings(home), name, force=force, reason=reason)


@flow(name="prognos-gate", description=FLOWS["gate"])
def gate_flow(name: str, now: datetime | None = None, home: str | None = None) -> GateVerdict:
    return jobs.gate(_settings(home), name, now=now)


@flow(name="prognos-lake-export", description=FLOWS["lake-export"])
def lake_export_flow(fleets: list[str] | None = None, home: str | None = None) -> list[Any]:
    from prognos.flows.lake import export_once

    return [r.to_json() for r in export_once(_settings(home), fleets, actor=ACTOR)]


FLOW_FUNCTIONS: dict[str, Any] = {
    "ingest": ingest_flow,
    "train": train_flow,
    "monitor": monitor_flow,
    "retrain": retrain_flow,
    "gate": gate_flow,
    "lake-export": lake_export_flow,
}


def _deployment(plan: Planned) -> RunnerDeployment:
    from prefect.deployments.runner import EntrypointType

    schedules = []
    if plan.cron is not None:
        try:
            validate_cron_string(plan.cron)
        except ValueError as exc:
            raise ConfigError(
                f"{plan.setting} {plan.cron!r} is not a cron schedule: {exc}"
            ) from exc
        schedules.append(Cron(plan.cron, timezone="UTC"))
    return FLOW_FUNCTIONS[plan.flow].to_deployment(
        name=plan.deployment_name,
        schedules=schedules,
        parameters=plan.parameters,
        description=FLOWS[plan.flow],
        tags=["prognos"],
        # The runner imports the flow by module, wherever prognos is installed or run from.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def deployments(settings: Settings, model: str | None = None) -> list[RunnerDeployment]:
    """The registrable deployments of :func:`~prognos.flows.schedules.planned`, schedules in
    UTC; a schedule that is not a cron expression is a ConfigError naming its setting."""
    return [_deployment(plan) for plan in planned(settings, model) if not plan.missing]


def serve_flows(settings: Settings, model: str | None = None) -> None:
    """Register the deployments with the server at ``PREFECT_API_URL`` and run their scheduled
    (and on-demand) runs in this process until interrupted."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = settings.prefect_api_url
    if not url:
        raise ConfigError(NO_SERVER)
    built = deployments(settings, model)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
        if problem is not None:
            raise ConfigError(
                f"the Prefect server at {url} does not answer ({problem}): start one with "
                "`prefect server start`"
            )
        serve(*built, print_starting_message=True)
