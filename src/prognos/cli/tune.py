"""``prognos tune``: an Optuna search of both members on the same grouped folds as ``train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from prognos.cli._common import HomeOption, get_state, load_fleet, path_line
from prognos.cli.data import EventsOption, SpecOption
from prognos.cli.models import DataOption


def tune(
    ctx: typer.Context,
    data: DataOption,
    budget: Annotated[float, typer.Option(help="Time budget in seconds.")] = 600.0,
    trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Base TrainConfig YAML.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Best config YAML.")] = Path(
        "tuned.yaml"
    ),
    spec: SpecOption = None,
    events: EventsOption = None,
    home: HomeOption = None,
) -> None:
    """Search tree and sequence hyperparameters (Optuna) on grouped cross-validation."""
    import yaml

    from prognos.training.config import TrainConfig
    from prognos.training.tune import tune as run_tune

    state = get_state(ctx, home)
    base = TrainConfig.from_yaml(config) if config else TrainConfig()
    fleet = load_fleet(state, data, spec, events)
    with state.err.status("Tuning") as status:
        outcome = run_tune(
            fleet,
            base,
            state.settings,
            budget_s=budget,
            max_trials=trials,
            progress=lambda msg: status.update(escape(msg)),
        )
    output.write_text(yaml.safe_dump(outcome.best.model_dump(mode="json"), sort_keys=False))
    state.out.print(
        f"{outcome.trials} trials; best ensemble RMSE {outcome.best_value:.3f}, the base "
        f"configuration's (trial 0, same folds) {outcome.default_value:.3f}"
    )
    path_line(state.out, "best configuration ->", output)
    state.out.print(
        f"train with it: prognos train --data {escape(data)} --config {escape(str(output))}",
        soft_wrap=True,
    )
