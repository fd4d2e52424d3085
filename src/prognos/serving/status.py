"""What ``/health`` and ``/metrics`` say about one service process: each dependency, the
acknowledged records the database still owes or refused, and whether the online state is ready."""

from __future__ import annotations

import time
from typing import Any

from prognos.serving.runtime import Runtime

# Dependencies whose trouble makes the service "degraded" (and their gauges 0).
DEPENDENCIES = ("database", "state_store", "registry", "compute", "state")


def health_report(runtime: Runtime) -> dict[str, Any]:
    """The ``HealthOut`` body; refreshes the dependency and log-record gauges as it goes."""
    telemetry = runtime.telemetry
    services: dict[str, str] = {}
    detail: dict[str, Any] = {}
    if runtime.core.writer is not None:
        status = runtime.core.writer.status()
        services["database"] = "ok" if status["database"] == "ok" else "down"
        detail["log_records"] = {
            "queued": status["queued"],
            "spooled": status["spooled"],
            "rejected": status["rejected"],
        }
        telemetry.spooled.set(status["spooled"])
        telemetry.rejected.set(status["rejected"])
    services["state_store"] = "ok" if runtime.state_store_ok() else "down"
    services["state_backend"] = "redis" if runtime.settings.redis_url is not None else "memory"
    services["registry"] = "ok" if runtime.core.registry_ok else "down"
    if runtime.core.registry_error:
        detail["registry_error"] = runtime.core.registry_error
    services["compute"] = "ok" if runtime.core.compute_ok() else "down"
    if runtime.core.compute_error:
        detail["compute_error"] = runtime.core.compute_error
    scorer = runtime.core.scorer
    if scorer is not None:
        services["compute_mode"] = scorer.mode
        # "rebuilding": requests needing state get 503 until it is rebuilt from the table.
        services["state"] = "ok" if scorer.ready else "rebuilding"
    for name in DEPENDENCIES:
        telemetry.dependency.labels(name).set(1 if services.get(name) == "ok" else 0)
    shadows = runtime.core.shadows
    shadow = None if shadows is None else shadows.status()
    if shadows is not None:  # not a dependency: a shadow's trouble never degrades the service
        telemetry.sync_shadow(shadows.totals(), 0 if shadow is None else shadow["queued"])
    model = runtime.core.model
    degraded = model is None or any(services.get(n, "ok") != "ok" for n in DEPENDENCIES)
    return {
        "status": "degraded" if degraded else "ok",
        "model_loaded": model is not None,
        "model_name": None if model is None else model.name,
        "model_version": None if model is None else model.version,
        "uptime_seconds": time.monotonic() - runtime.core.started,
        "services": services,
        "detail": detail,
        "shadow": shadow,
    }
