"""GET /health and GET /metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from prognos.serving.deps import RuntimeDep
from prognos.serving.schemas import HealthOut
from prognos.serving.status import health_report

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut)
def health(runtime: RuntimeDep) -> JSONResponse:
    """``ok`` or ``degraded`` with the state of each dependency; 503 only when no model is loaded
    (a load balancer should not route predictions here), 200 otherwise."""
    body = HealthOut.model_validate(health_report(runtime))
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.model_loaded else 503)


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus exposition: requests and latency by endpoint and status, predictions by risk
    level, the model version, errors, dependency state, compute batch sizes."""
    health_report(runtime)  # refreshes the dependency gauges
    return runtime.telemetry.exposition()
