"""``prognos monitor run``: one live monitoring run over the database's recent window (or one
every ``--every`` seconds until Ctrl-C), stored, reported in HTML and served by the API.

Windows are durations by arrival time, ending now: ``--window`` (data quality, drift) and
``--label-window`` (predictions judged against the feedback that has arrived), e.g. ``90m``,
``24h``, ``7d``, ``3600s``; a bare number is hours.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import CliState, HomeOption, get_state, path_line, steps
from prognos.cli.db import open_database
from prognos.errors import ConfigError

if TYPE_CHECKING:
    from prognos.monitoring.live import LiveResult

__all__ = ["parse_hours", "run"]

_UNITS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0}


def parse_hours(text: str, option: str) -> float:
    """``90m`` -> 1.5; a bare number is hours; ConfigError naming ``option`` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    hours = float(match[1]) * _UNITS[match[2] or "h"] if match else 0.0
    if hours <= 0:
        raise ConfigError(f"{option} {text!r}: expected a positive duration such as 90m, 24h, 7d")
    return hours


def run(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Registered model to monitor.")],
    version: Annotated[
        str | None,
        typer.Option(
            "--version", help="Its version \\[default: the champion].", show_default=False
        ),
    ] = None,
    fleet: Annotated[
        str | None,
        typer.Option(
            "--fleet",
            help="Fleet \\[default: PROGNOS_FLEET, else the model's].",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Recent window for quality and drift, e.g. 90m, 24h, 7d "
            "\\[default: PROGNOS_MONITORING_WINDOW_HOURS, 24h].",
            show_default=False,
        ),
    ] = None,
    label_window: Annotated[
        str | None,
        typer.Option(
            "--label-window",
            help="How far back predictions are judged against feedback "
            "\\[default: PROGNOS_MONITORING_LABEL_WINDOW_HOURS, 30d].",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option("--every", min=1.0, help="Run again every SECONDS until Ctrl-C."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each run as one line of JSON on stdout.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Data quality, drift, realised and estimated performance and interval coverage of the
    model's recent traffic; stored in the database (GET /monitoring/latest, /metrics)."""
    from prognos.monitoring.live import load_monitored, profile_drift, run_live

    state = get_state(ctx, home)
    settings = state.settings
    hours = parse_hours(window, "--window") if window else None
    label_hours = parse_hours(label_window, "--label-window") if label_window else None
    db = open_database(settings)
    try:
        with steps(state.err, 2) as step:
            step(f"loading {model}")
            facts = load_monitored(settings, model, version)
            step("loading its drift profile")
            check, unavailable = profile_drift(settings, facts)
        while True:
            with state.err.status(f"Monitoring {escape(facts.name)} v{facts.version}"):
                result = run_live(
                    settings,
                    db,
                    facts,
                    fleet=fleet,
                    drift=check,
                    drift_unavailable=unavailable,
                    window_hours=hours,
                    label_window_hours=label_hours,
                )
            _show(state, result, as_json)
            if every is None:
                return
            time.sleep(every)
    except KeyboardInterrupt:
        state.err.print("stopped")
    finally:
        db.dispose()


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _show(state: CliState, result: LiveResult, as_json: bool) -> None:
    if as_json:
        typer.echo(_json_line(result))
        return
    perf, quality = result.performance, result.quality
    c = perf.counts
    table = Table(
        title=f"{result.model.name} v{result.model.version} · fleet {result.fleet}",
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("realised", justify="right")
    table.add_column("estimated (CBPE)", justify="right")
    for key, label in (
        ("precision", "precision"),
        ("recall", "recall"),
        ("f2", "F2"),
        ("false_alarm_rate", "false-alarm rate"),
    ):
        table.add_row(label, _fmt(perf.realised[key]), _fmt(perf.estimated[key]))
    cov = perf.coverage
    table.add_row(
        "interval coverage",
        f"{_fmt(cov.coverage)} ({cov.status.replace('_', ' ')})",
        f"nominal {_fmt(cov.nominal, 2)}",
    )
    table.add_row("RUL MAE / RMSE", f"{_fmt(perf.rul['mae'], 1)} / {_fmt(perf.rul['rmse'], 1)}", "")
    state.out.print(table)
    drift = (
        f"drift {'[red]detected[/]' if result.drift_detected else 'none'} "
        f"({_fmt(result.share_drifted, 2)} of columns)"
        if result.drift.get("available")
        else f"drift not computed: {escape(str(result.drift.get('reason')))}"
    )
    state.out.print(
        f"predictions {c['predictions']:,}: {c['labelled']:,} labelled ({c['positives']:,} "
        f"failures within the horizon, {c['negatives']:,} survived it), {c['unlabelled']:,} "
        f"unlabelled; readings {quality.readings:,}, missing {_fmt(quality.missing_rate, 4)}, "
        f"out of range {quality.outliers:,}, dead letters {quality.dead_letters_total:,}; "
        f"{drift}",
        soft_wrap=True,
        highlight=False,
    )
    if result.report_path is not None:
        path_line(state.out, f"run {result.run_id}, report ->", result.report_path)


def _json_line(result: LiveResult) -> str:
    """The run as stored (NaN as null), one line."""
    from prognos.storage.monitoring import json_safe

    return json.dumps(json_safe(result.to_json()), separators=(",", ":"))
