"""``prognos demo --loop``: the closed loop, stage by stage, with its figures and audit trail
(the scenario itself is :mod:`prognos.flows.scenario`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from prognos.cli._common import CliState, path_line
from prognos.cli.loop import show_verdict

if TYPE_CHECKING:
    from prognos.flows.scenario import LoopPlan, LoopResult


def loop_demo(state: CliState, plan: LoopPlan) -> LoopResult:
    """Run the scenario with a local alert receiver and print every stage."""
    from prognos.flows.scenario import run_loop

    out = state.out
    out.rule("[bold]prognos demo --loop: drift -> alert -> feedback -> retrain -> shadow -> gate")
    path_line(out, "home:", state.settings.home)
    started = time.perf_counter()
    with state.err.status("Running the loop") as status:
        result = run_loop(state.settings, plan, say=lambda line: status.update(escape(line)))
    show_loop(state, plan, result)
    out.print(f"[bold]loop done in {time.perf_counter() - started:.0f} s[/]")
    return result


def show_loop(state: CliState, plan: LoopPlan, result: LoopResult) -> None:
    out = state.out
    s = result.seconds
    out.rule(f"1. Champion trained on lives of {plan.old_life[0]}-{plan.old_life[1]} cycles")
    out.print(_figures("cross-validation", result.champion_cv), soft_wrap=True)
    out.rule(
        f"2. The fleet changed: lives of {plan.new_life[0]}-{plan.new_life[1]} cycles, "
        f"fault {plan.fault}"
    )
    for line in result.wave1.lines():
        out.print(escape(line), soft_wrap=True)
    out.print(f"{result.failures1} failures reported by operators ({s['wave1']:.1f} s)")
    out.rule("3. Monitoring, alerts and triggers")
    mon = result.monitoring
    drifted = [name for name, c in (mon.drift.get("columns") or {}).items() if c.get("drifted")]
    realised = mon.performance.realised
    out.print(
        f"drift: {'[red]detected[/]' if mon.drift_detected else 'none'} "
        f"({escape(', '.join(drifted[:6]) or '-')}); champion's realised F2 "
        f"{realised['f2']:.3f}, recall {realised['recall']:.3f} over "
        f"{mon.performance.counts['labelled']:,} labelled predictions",
        soft_wrap=True,
    )
    for line in result.alerts:
        out.print(f"  alert delivered: {escape(line)}", soft_wrap=True)
    for reason in result.triggers:
        out.print(f"  trigger: {escape(reason)}", soft_wrap=True)
    out.rule("4. Retraining (original data + the labelled live lives)")
    r = result.retrained
    out.print(
        f"version {r.version} (data version {r.data_version}, {r.seconds.get('total', 0):.0f} s): "
        f"{'challenger' if r.challenger else 'rejected: ' + '; '.join(r.rejected)}",
        soft_wrap=True,
    )
    out.print(_figures("cross-validation", r.cv), soft_wrap=True)
    out.print(escape(", ".join(f"{k} {v}" for k, v in r.counts.items())), soft_wrap=True)
    out.rule("5. Second wave, the challenger in the champion's shadow")
    for line in result.wave2.lines():
        out.print(escape(line), soft_wrap=True)
    out.print(f"{result.failures2} failures reported by operators ({s['wave2']:.1f} s)")
    out.rule("6. The promotion gate")
    show_verdict(state, result.verdict)
    out.rule("7. Audit trail (prognos audit list)")
    for line in _audit_lines(result.audit):
        out.print(escape(line), soft_wrap=True, highlight=False)
    out.print(
        "stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()),
        soft_wrap=True,
    )


def _figures(label: str, figures: dict[str, float]) -> str:
    keys = ("rmse", "f2", "recall", "precision")
    shown = ", ".join(f"{k} {figures[k]:.3f}" for k in keys if k in figures)
    return f"{label}: {shown}"


def _audit_lines(events: list[dict[str, Any]]) -> list[str]:
    """One line per event: time, actor, action, subject and its plain details (nested figures
    are in ``prognos audit list --json``)."""
    lines = []
    for event in events:
        details = ", ".join(
            f"{k}={v}"
            for k, v in event["details"].items()
            if not isinstance(v, dict | list) and k not in ("run_id", "name")
        )
        lines.append(
            f"{event['at']:%H:%M:%S} {event['actor']:<14} {event['action']:<20} "
            f"{event['subject']:<8} {details[:140]}"
        )
    return lines
