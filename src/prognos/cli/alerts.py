"""``prognos alerts``: evaluate the alert rules once (``check``), show the stored alerts
(``list``), and write the rules as Prometheus alerting rules (``prometheus-rules``).

The rules are ``--rules FILE``, else ``PROGNOS_ALERT_RULES``, else the shipped defaults; webhooks
come from ``PROGNOS_ALERT_SLACK_WEBHOOK_URL`` and ``PROGNOS_ALERT_WEBHOOK_URL`` only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import CliState, HomeOption, get_state, path_line
from prognos.cli.db import open_database
from prognos.errors import ConfigError

if TYPE_CHECKING:
    from prognos.alerting.evaluate import Evaluation

__all__ = ["app"]

app = typer.Typer(
    help="Alerts: evaluate the rules, list the alerts, export Prometheus rules.",
    no_args_is_help=True,
)

RulesOption = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        help="Alert rules YAML \\[default: PROGNOS_ALERT_RULES, else the shipped defaults].",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
# How long `check` waits for its notifications to be delivered before it exits.
DELIVERY_WAIT_SECONDS = 60.0
_STATE_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green", "no data": "dim"}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{escape(state)}[/]" if style else escape(state)


@app.command()
def check(
    ctx: typer.Context,
    rules: RulesOption = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Evaluate every rule now, send what fired or resolved, and print the alerts."""
    from prognos.alerting.evaluate import evaluate
    from prognos.alerting.notify import Dispatcher, build_notifiers
    from prognos.alerting.rules import load_rules

    state = get_state(ctx, home)
    settings = state.settings
    rule_set = load_rules(settings, rules)
    dispatcher = Dispatcher(build_notifiers(settings))
    db = open_database(settings)
    try:
        evaluation = evaluate(settings, db, rule_set, now=datetime.now(UTC), dispatcher=dispatcher)
        with state.err.status(f"Sending {len(evaluation.events)} notification(s)"):
            delivered = dispatcher.flush(DELIVERY_WAIT_SECONDS)
    finally:
        dispatcher.stop(timeout=1.0)
        db.dispose()
    stats = dispatcher.stats()
    if as_json:
        document = {**evaluation.to_json(), "delivery": stats, "delivered_all": delivered}
        typer.echo(json.dumps(document))
        return
    _show_evaluation(state, evaluation, stats)


def _show_evaluation(
    state: CliState, evaluation: Evaluation, stats: dict[str, dict[str, int]]
) -> None:
    table = Table(title=f"Alerts at {evaluation.at:%Y-%m-%d %H:%M:%S} UTC")
    for name in ("rule", "severity", "fleet", "subject", "state", "value", "threshold", "since"):
        table.add_column(name, justify="right" if name in ("value", "threshold") else "left")
    table.add_column("note")
    for r in evaluation.results:
        change = f" ({r.change})" if r.change else ""
        table.add_row(
            escape(r.rule),
            r.severity,
            escape(r.fleet),
            escape(r.subject),
            _styled(r.state) + change,
            _fmt(r.value),
            f"{r.comparison} {_fmt(r.threshold)}".strip() if r.threshold is not None else "",
            _fmt(r.started_at),
            escape(r.note),
        )
    state.out.print(table)
    for rule, count in sorted(evaluation.ok_assets.items()):
        state.out.print(f"{rule}: {count} asset(s) ok")
    firing = len(evaluation.by_state("firing"))
    sent = ", ".join(
        f"{name}: {s['delivered']} delivered, {s['failed']} failed" for name, s in stats.items()
    )
    state.out.print(
        f"{firing} firing, {len(evaluation.events)} notification(s) ({sent})", soft_wrap=True
    )


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    include_all: Annotated[
        bool, typer.Option("--all", help="Resolved alerts too (newest first).")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most alerts shown.")] = 100,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """The current (pending and firing) alerts from the database; --all adds resolved ones."""
    from prognos.storage import alerts as store

    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        rows = store.list_alerts(db, include_resolved=include_all, limit=limit)
    finally:
        db.dispose()
    if as_json:
        plain = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows
        ]
        typer.echo(json.dumps(plain))
        return
    if not rows:
        state.out.print("no alerts" if include_all else "no pending or firing alerts")
        return
    table = Table(title="Alerts")
    columns = ("rule", "severity", "fleet", "subject", "state", "value", "threshold")
    for name in (*columns, "started", "fired", "resolved"):
        table.add_column(name, justify="right" if name in ("value", "threshold") else "left")
    for row in rows:
        cells = [escape(_fmt(row[c])) for c in columns]
        cells[4] = _styled(row["state"])
        times = [_fmt(row[c]) for c in ("started_at", "fired_at", "resolved_at")]
        table.add_row(*cells, *times)
    state.out.print(table)


@app.command("prometheus-rules")
def prometheus_rules(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the rule file here \\[default: stdout]."),
    ] = None,
    rules: RulesOption = None,
    home: HomeOption = None,
) -> None:
    """The alert rules as Prometheus alerting rules (for Alertmanager) over /metrics."""
    from prognos.alerting.prometheus import render_prometheus_rules
    from prognos.alerting.rules import load_rules

    state = get_state(ctx, home)
    rule_set = load_rules(state.settings, rules)
    chosen = rules or state.settings.alert_rules
    text = (
        render_prometheus_rules(rule_set, source=str(chosen))
        if chosen
        else render_prometheus_rules(rule_set)
    )
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the Prometheus rules to {output}: {exc}") from exc
    path_line(state.err, "wrote", output)
