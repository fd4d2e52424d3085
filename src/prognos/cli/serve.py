"""``prognos serve``: the prediction service under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from prognos.cli._common import HomeOption, get_state
from prognos.config import Settings
from prognos.errors import ConfigError


def serve(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Registered model to serve (its champion); PROGNOS_MODEL_NAME."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes; more than one needs PROGNOS_REDIS_URL.")
    ] = 1,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Serve without API keys (a local demo only)."),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    home: HomeOption = None,
) -> None:
    """Serve the champion of a registered model over HTTP (docs at /docs)."""
    settings = get_state(ctx, home).settings
    name = model or settings.model_name
    if name is None:
        raise ConfigError("say which model to serve: --model NAME or PROGNOS_MODEL_NAME")
    run_server(
        settings,
        name,
        host=host,
        port=port,
        workers=workers,
        auth=not no_auth,
        log_level=log_level,
    )


def run_server(
    settings: Settings,
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    auth: bool = True,
    log_level: str = "warning",
) -> None:
    """Run uvicorn in the foreground until interrupted."""
    import uvicorn

    if workers > 1 and settings.redis_url is None:
        raise ConfigError(
            f"{workers} workers would each keep their own online state: set PROGNOS_REDIS_URL "
            "so they share it, or run one worker"
        )
    # Workers are separate processes that build their settings from the environment.
    os.environ["PROGNOS_HOME"] = str(settings.home.resolve())
    os.environ["PROGNOS_MODEL_NAME"] = name
    if not auth:
        os.environ["PROGNOS_AUTH_ENABLED"] = "false"
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker keeps its own counters; /metrics must add up all of them, whichever worker
        # answers the scrape: prometheus-client's multiprocess mode, in a fresh directory.
        metrics_dir = settings.home / "run" / f"metrics-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # One thread per native pool: the service's parallelism is processes and batching, and
    # OpenMP pools of XGBoost and torch in one process stall each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings.ensure_home()
    typer.echo(f"prognos serving {name}@champion on http://{host}:{port} (docs: /docs)")
    try:
        uvicorn.run(
            "prognos.serving.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level=log_level,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
