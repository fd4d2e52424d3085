"""``prognos retrain`` and ``prognos models gate``: the retraining loop's two decisions, by hand."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import CliState, HomeOption, get_state, steps

if TYPE_CHECKING:
    from prognos.flows.promotion import GateVerdict
    from prognos.flows.retrain import RetrainOutcome


def retrain(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Registered model to retrain.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit log and the MLflow run).")
    ] = "on demand",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Retrain only if a trigger holds (drift, weak realised F2, new labels).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Train the champion's recipe again on its original data plus the stored lives labelled by
    feedback; the new version becomes the challenger, shadowed by the service until the gate
    decides (prognos models gate)."""
    from prognos.flows.jobs import due_reasons
    from prognos.flows.retrain import retrain as run_retrain

    state = get_state(ctx, home)
    trigger = "manual"
    if check:
        reasons = due_reasons(state.settings, model)
        if not reasons:
            state.out.print("no trigger holds: nothing to retrain")
            return
        reason, trigger = "; ".join(reasons), "monitoring"
        state.out.print(f"retraining: {escape(reason)}", soft_wrap=True)
    with steps(state.err, 12) as step:
        outcome = run_retrain(state.settings, model, reason=reason, trigger=trigger, progress=step)
    if as_json:
        typer.echo(json.dumps(outcome.to_json(), default=str))
        return
    _show_retrain(state, outcome)


def _show_retrain(state: CliState, outcome: RetrainOutcome) -> None:
    out = state.out
    title = f"Retraining {escape(outcome.name)} (from version {outcome.parent_version})"
    table = Table(title=title)
    table.add_column("")
    table.add_column("")
    counts = ", ".join(f"{k} {v:,}" for k, v in outcome.counts.items() if isinstance(v, int))
    cv = ", ".join(f"{k} {v:.3f}" for k, v in outcome.cv.items() if v == v)
    rows = [
        ("trigger", f"{outcome.trigger}: {outcome.reason}"),
        ("data version", outcome.data_version),
        ("snapshot", str(outcome.snapshot)),
        ("data", counts),
        ("cross-validation", cv),
        ("version", str(outcome.version)),
        ("seconds", ", ".join(f"{k} {v:.1f}" for k, v in outcome.seconds.items())),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    out.print(table)
    if outcome.challenger:
        out.print(
            f"[green]version {outcome.version} is the challenger[/]: the service scores it in "
            "the champion's shadow; `prognos models gate` decides on live outcomes",
            soft_wrap=True,
        )
    else:
        out.print(f"[red]not a challenger[/]: {escape('; '.join(outcome.rejected))}")


def gate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Judge only: promote or reject nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """The promotion gate: challenger against champion on the same labelled live window; promotes
    or rejects the challenger (audited), or waits for more labels."""
    from prognos.flows.promotion import run_gate
    from prognos.storage.database import open_database

    state = get_state(ctx, home)
    db = open_database(state.settings)
    try:
        verdict = run_gate(state.settings, db, name, act=not dry_run)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(verdict.to_json(), default=str))
        return
    show_verdict(state, verdict)


def show_verdict(state: CliState, verdict: GateVerdict) -> None:
    out = state.out
    colour = {"promote": "green", "reject": "red", "wait": "yellow", "none": "white"}
    out.print(
        f"[{colour[verdict.verdict]}]{verdict.verdict}[/] {escape(verdict.name)}: champion "
        f"{verdict.champion}, challenger {verdict.challenger}"
    )
    for reason in verdict.reasons:
        out.print(f"  - {escape(reason)}", soft_wrap=True)
    figures: dict[str, Any] = verdict.figures
    if "champion" not in figures:
        return
    table = Table(title=f"Same {figures['shared_predictions']:,} predictions, live and in CV")
    table.add_column("model")
    for column in ("labelled", "positives", "F2", "recall", "precision", "RUL RMSE", "CV F2"):
        table.add_column(column, justify="right")
    for role in ("champion", "challenger"):
        live, cv = figures[role]["live"], figures[role]["cv"]
        table.add_row(
            role,
            *(_fmt(live.get(k), 0) for k in ("labelled", "positives")),
            *(_fmt(live.get(k)) for k in ("f2", "recall", "precision")),
            _fmt(live.get("rul_rmse"), 1),
            _fmt(cv.get("f2")),
        )
    out.print(table)


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
