"""The savings of a model as rows of text (for the terminal and the page) and as an HTML page."""

from __future__ import annotations

from prognos.reports.business import ModelSavings, SavingsEvaluation
from prognos.reports.html import Page, Table

POLICY_TITLES = {
    "run_to_failure": "run to failure",
    "fixed_interval": "best fixed interval",
    "prognos": "act on prognos alerts",
}
POLICY_HEADER = [
    "policy",
    "lives",
    "failures",
    "actions",
    "unused life (cycles)",
    "cost/cycle",
    "cost/life",
    "total cost",
]
SAVINGS_HEADER = [
    "prognos against",
    "per cycle",
    "per asset (mean life)",
    "fleet total",
    "share",
]


def policy_rows(evaluation: SavingsEvaluation) -> list[list[str]]:
    rows = []
    for p in evaluation.policies:
        title = POLICY_TITLES[p.policy]
        if p.interval is not None:
            title += f" (T = {p.interval:g})"
        elif p.interval_range is not None:
            title += f" (T = {p.interval_range[0]:g}-{p.interval_range[1]:g} by fold)"
        rows.append(
            [
                title,
                f"{p.lives:,}",
                f"{p.failures:,}",
                f"{p.preventive_actions:,}",
                "-" if p.unused_life is None else f"{p.unused_life:.1f}",
                f"{p.cost_per_cycle:,.2f}",
                f"{p.cost_per_life:,.0f}",
                f"{p.total_cost:,.0f}",
            ]
        )
    return rows


def savings_rows(evaluation: SavingsEvaluation) -> list[list[str]]:
    return [
        [
            POLICY_TITLES[s.against],
            f"{s.per_cycle:,.2f}",
            f"{s.per_asset:,.0f}",
            f"{s.fleet_total:,.0f} over {s.cycles:,.0f} cycles",
            f"{s.share:.1%}",
        ]
        for s in evaluation.savings
    ]


def headline(result: ModelSavings) -> str:
    threshold = "" if result.threshold is None else f", alert threshold {result.threshold:.3f}"
    return (
        f"{result.model} version {result.version} (run {result.run_id[:8]}): a failure costs "
        f"{result.cost_missed_failure:,.0f}, a preventive action {result.cost_preventive:,.0f}"
        f"{threshold}; best fixed interval on its {result.training_lives} training lives: "
        f"T = {result.interval} cycles"
    )


def savings_page(result: ModelSavings) -> Page:
    page = Page(title=f"prognos savings: {result.model} version {result.version}")
    page.intro.append(headline(result))
    evaluations = [result.cross_validation] + ([result.scored] if result.scored else [])
    for i, evaluation in enumerate(evaluations):
        title = (
            "Cross-validation (every asset scored by a model that did not see it)"
            if i == 0
            else f"Scored fleet: {evaluation.name}"
        )
        section = page.section(title, f"evaluation-{i}")
        section.text(
            f"{evaluation.lives:,} lives"
            + (
                f" ({evaluation.left_out:,} without a known failure left out)"
                if evaluation.left_out
                else ""
            )
        )
        section.table(Table(header=POLICY_HEADER, rows=policy_rows(evaluation)))
        section.table(
            Table(header=SAVINGS_HEADER, rows=savings_rows(evaluation), caption="savings")
        )
        for note in evaluation.notes:
            section.note(note)
    assumptions = page.section("What the figures assume", "assumptions")
    for line in result.assumptions:
        assumptions.text(line)
    return page
