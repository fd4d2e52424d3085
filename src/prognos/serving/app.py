"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan loads the model.

``prognos serve`` runs it under uvicorn (uvloop + httptools). Nothing happens at import: the
model, database, writer and state store are created when the app starts and closed when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import prognos
from prognos.config import Settings, get_settings
from prognos.ingestion.loading import LoadedModel
from prognos.serving import ui
from prognos.serving.errors import install_error_handlers
from prognos.serving.middleware import ServiceMiddleware
from prognos.serving.routers import (
    assets,
    feedback,
    health,
    keys,
    monitoring,
    plan,
    predictions,
    readings,
)
from prognos.serving.runtime import Runtime

DESCRIPTION = """
Failure risk, remaining useful life with its interval, the cost-optimal inspect decision and
per-feature explanations, from sensor readings as they arrive.

Authenticate with an API key in the `X-API-Key` header (`prognos keys create`). Scopes:
`read` (assets, explanations, the plan), `predict`, `ingest` (readings, feedback), `admin` (all).
"""


def create_app(settings: Settings | None = None, *, model: LoadedModel | None = None) -> FastAPI:
    """The service for ``settings.model_name``'s champion (or an already loaded ``model``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        app.state.runtime = runtime
        await runtime.start(model)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="prognos",
        version=prognos.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry (no provider is configured: metrics are Prometheus's, at
        # /metrics) still asked the global providers on every request, ~18 µs. Older FastAPI
        # versions keep the argument as an unused extra.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.max_body_bytes)

    for router in (
        health.router,
        predictions.router,
        readings.router,
        feedback.router,
        assets.router,
        keys.router,
        monitoring.router,
        plan.router,
    ):
        app.include_router(router)
    ui.install(app, settings)  # the operator dashboard under /ui
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` and workers: settings from ``PROGNOS_*``."""
    return create_app(get_settings())
