"""``prognos plan``: which asset to inspect on which day, against inspecting the riskiest first."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prognos.cli._common import (
    HomeOption,
    fmt_int,
    get_state,
    parse_table_target,
    path_line,
    valid_readings,
    write_table,
)
from prognos.cli.data import EventsOption, SpecOption

if TYPE_CHECKING:
    import pandas as pd

    from prognos.cli._common import CliState
    from prognos.planning import Costs, Plan, PlanComparison


def plan(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Registered model NAME (its stored predictions; its champion with --data) or "
            "any MLflow model URI (models:/NAME/3, models:/NAME@champion).",
        ),
    ],
    crews: Annotated[int, typer.Option("--crews", help="Inspections a day.")],
    days: Annotated[int, typer.Option("--days", help="Days planned, from today.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Predict this source's assets at their last cycle with the model (KIND:PATH); "
            "the model's latest stored predictions when unset.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Write the schedule (CSV, or csv:/parquet:)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TrainConfig YAML whose costs to use \\[default: its defaults]."
        ),
    ] = None,
    cycles_per_day: Annotated[
        float, typer.Option("--cycles-per-day", help="The fleet's time units that pass in a day.")
    ] = 1.0,
    show: Annotated[int, typer.Option("--show", help="Scheduled visits printed.")] = 20,
    spec: SpecOption = None,
    events: EventsOption = None,
    home: HomeOption = None,
) -> None:
    """Schedule inspections (at most CREWS a day over DAYS days) to minimise expected cost."""
    from prognos.planning import plan_fleet, plan_from_store
    from prognos.planning.fleet import FleetRisk
    from prognos.planning.plan import check_capacity

    state = get_state(ctx, home)
    check_capacity(crews, days)  # before any model is loaded
    costs = _costs(config)
    if data is not None:
        predictions, coverage = _predict(state, data, model, spec, events)
        comparison = plan_fleet(
            FleetRisk.from_frame(predictions), crews=crews, days=days, costs=costs,
            coverage=coverage, time_per_day=cycles_per_day,
        )  # fmt: skip
        source = data
    else:
        from prognos.storage.database import Database, database_url

        db = Database(database_url(state.settings))
        try:
            db.upgrade()
            comparison = plan_from_store(
                db, _model_name(model), crews=crews, days=days, costs=costs,
                time_per_day=cycles_per_day,
            )  # fmt: skip
        finally:
            db.dispose()
        source = f"stored predictions of {_model_name(model)}"
    _report(state, comparison, source, show)
    if output is not None:
        kind, path = parse_table_target(output if ":" in output else f"csv:{output}", "the plan")
        write_table(visits_frame(comparison.plan), path, kind)
        path_line(state.out, "wrote", path)


def visits_frame(plan: Plan) -> pd.DataFrame:
    """The schedule as a table, one row per visit in day order."""
    import pandas as pd

    columns = [
        "asset_id",
        "day",
        "failure_probability_before",
        "failure_probability_horizon",
        "expected_cost",
        "expected_saving",
    ]
    return pd.DataFrame([{c: getattr(v, c) for c in columns} for v in plan.visits], columns=columns)


def _costs(config: Path | None) -> Costs:
    from prognos.planning import Costs

    if config is None:
        return Costs.default()
    from prognos.training.config import TrainConfig

    train_costs = TrainConfig.from_yaml(config).costs
    return Costs(missed_failure=train_costs.missed_failure, inspection=train_costs.false_alarm)


def _model_name(model: str) -> str:
    """``NAME`` from ``NAME``, ``models:/NAME@alias`` or ``models:/NAME/3``."""
    if model.startswith("models:/"):
        return model.removeprefix("models:/").split("/")[0].split("@")[0]
    return model


def _predict(
    state: CliState, data: str, model: str, spec: Path | None, events: Path | None
) -> tuple[pd.DataFrame, float]:
    """The fleet predicted at its last cycles, and the coverage of the model's intervals."""
    from prognos.cli.models import _load_model

    readings = valid_readings(state, data, spec, events, "plan from")
    uri = model if ":/" in model else f"models:/{model}@champion"
    loaded = _load_model(state, uri)
    predictions = loaded.predict(readings)  # type: ignore[attr-defined]
    bundle = loaded.unwrap_python_model().bundle  # type: ignore[attr-defined]
    return predictions, float(bundle.post.intervals.coverage)


def _report(state: CliState, comparison: PlanComparison, source: str, show: int) -> None:
    out = state.out
    best, base = comparison.plan, comparison.baseline
    out.print(
        f"{fmt_int(best.n_assets)} assets from {escape(source)}; {best.crews} inspection(s) a day "
        f"for {best.days} days; missed failure {best.costs.missed_failure:,.0f}, inspection "
        f"{best.costs.inspection:,.0f}"
    )
    table = Table(title="Inspection plan (minimum expected cost)")
    for column in ("day", "asset", "P(failed before)", "P(fails in horizon)", "expected cost"):
        table.add_column(column, justify="right")
    for visit in best.visits[: max(show, 0)]:
        table.add_row(
            str(visit.day),
            escape(visit.asset_id),
            f"{visit.failure_probability_before:.3f}",
            f"{visit.failure_probability_horizon:.3f}",
            f"{visit.expected_cost:,.0f}",
        )
    out.print(table)
    if len(best.visits) > show:
        out.print(f"... and {len(best.visits) - show} more visits (--output writes them all)")
    compare = Table(title="Expected cost over the horizon, same capacity and costs")
    for column in ("policy", "inspections", "expected cost", "solver", "seconds"):
        compare.add_column(column, justify="right" if column != "policy" else "left")
    for p in (best, base):
        compare.add_row(
            p.policy, str(len(p.visits)), f"{p.expected_cost:,.0f}", p.status, f"{p.seconds:.3f}"
        )
    compare.add_row("no inspection", "0", f"{best.expected_cost_idle:,.0f}", "", "")
    out.print(compare)
    out.print(
        f"the plan saves {comparison.saving:,.0f} in expected cost over riskiest-first "
        f"({_share(comparison.saving, base.expected_cost)})"
    )


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "n/a"
