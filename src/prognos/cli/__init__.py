"""The ``prognos`` command line: thin commands over the library, one module per command group.

Every data source is one ``KIND:PATH`` string. Errors that prognos raises on purpose
(:class:`~prognos.errors.PrognosError`) and invalid configs (pydantic ``ValidationError``) end the
command with a one-line red message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup

from prognos import __version__
from prognos.cli import (
    alerts,
    audit,
    data,
    db,
    demo,
    features,
    feedback,
    flows,
    keys,
    lake,
    loop,
    models,
    monitor,
    plan,
    report,
    serve,
    simulate,
    stream,
    tune,
)
from prognos.cli._common import CliState, error_text, print_error
from prognos.config import get_settings
from prognos.errors import PrognosError

__all__ = ["app", "main"]


class _PrognosGroup(TyperGroup):
    """The root group: turns expected errors into one red line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (PrognosError, ValidationError) as exc:
            print_error(error_text(exc))
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_PrognosGroup,
    help="prognos: predictive maintenance from fleet sensor data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold whole fleets (and maybe secrets)
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"prognos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Root of everything prognos writes (overrides PROGNOS_HOME).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    settings = get_settings(home=home) if home is not None else get_settings()
    ctx.obj = CliState(settings=settings, out=Console(), err=Console(stderr=True))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"prognos {__version__}")


app.command("simulate")(simulate.simulate)
data.app.add_typer(lake.snapshot_app, name="snapshot")
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.command("demo")(demo.demo)
app.command("train")(models.train)
app.command("predict")(models.predict)
app.command("evaluate")(models.evaluate)
app.command("tune")(tune.tune)
app.command("plan")(plan.plan)
app.command("retrain")(loop.retrain)
models.models_app.command("gate")(loop.gate)
app.add_typer(models.models_app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.command("serve")(serve.serve)
app.add_typer(stream.app, name="stream")
app.add_typer(monitor.app, name="monitor")
app.add_typer(alerts.app, name="alerts")
app.command("ingest")(flows.ingest)
app.add_typer(flows.app, name="flows")
app.add_typer(lake.app, name="lake")
app.add_typer(audit.app, name="audit")
app.add_typer(feedback.app, name="feedback")
app.add_typer(report.app, name="report")


def main() -> None:
    """Console-script entry point."""
    # OpenMP threads (XGBoost, torch) that spin while waiting starve each other on a small
    # machine: measured ~4x slower XGBoost fits on busy cores. Must be set before they load.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()
