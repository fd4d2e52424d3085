"""Plumbing shared by the commands: per-invocation state, error text, progress, sources, outputs.

Heavy libraries (pandas, pandera, scikit-learn) are imported inside the functions that need them so
``prognos --help`` and ``prognos --version`` stay instant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from prognos.config import Settings, get_settings
from prognos.errors import DataSourceError, DataValidationError

if TYPE_CHECKING:
    import pandas as pd

    from prognos.data.dataset import FleetData
    from prognos.data.validation import ValidationResult

# Suffixes dropped from a file name to name what is derived from it (mirrors the data sidecars).
_DATA_SUFFIXES = {".csv", ".parquet", ".pq", ".txt", ".gz", ".bz2", ".xz", ".zip", ".zst"}


@dataclass
class CliState:
    """What one invocation's commands share: settings and the two consoles."""

    settings: Settings
    out: Console
    err: Console


HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Root of everything prognos writes (overrides PROGNOS_HOME and a --home given "
        "before the command).",
        show_default=False,
    ),
]


def get_state(ctx: typer.Context, home: Path | None = None) -> CliState:
    """The invocation's state; a command-level ``--home`` replaces the settings' home."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # pragma: no cover - the app callback always sets it
        raise RuntimeError("CLI state missing: the app callback did not run")
    if home is not None:
        return replace(obj, settings=get_settings(home=home))
    return obj


# ------------------------------------------------------------------------------------- messages


def error_text(exc: BaseException) -> str:
    """One line naming the problem; pydantic details condensed to ``field: message; ...``."""
    cause = exc if isinstance(exc, ValidationError) else exc.__cause__
    if isinstance(cause, ValidationError):
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in cause.errors()
        )
        if exc is cause:
            return f"invalid {cause.title}: {details}"
        head = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        head = head.replace(str(cause).splitlines()[0], "").rstrip(" :")
        return f"{head}: {details}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) or type(exc).__name__


def print_error(message: str) -> None:
    """Print a one-line red error on stderr (never wrapped, never parsed as markup)."""
    console = Console(stderr=True)
    console.print(Text.assemble(("error: ", "bold red"), (message, "red")), soft_wrap=True)


def path_line(console: Console, label: str, path: Path | str) -> None:
    """``label path`` on one line, so a path is never broken for copy and paste."""
    console.print(f"{label} [cyan]{escape(str(path))}[/]", soft_wrap=True)


# ------------------------------------------------------------------------------------- progress


@contextmanager
def steps(console: Console, total: int) -> Iterator[Callable[[str], None]]:
    """A transient progress bar over ``total`` named steps; call the yielded function per step.

    Nothing is drawn when the console is not a terminal (logs and pipes stay clean).
    """
    if not console.is_terminal:
        yield lambda _: None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("", total=total)
        started = False

        def step(description: str) -> None:
            nonlocal started
            if started:
                progress.advance(task)
            started = True
            progress.update(task, description=escape(description))

        yield step
        progress.update(task, completed=total)


# -------------------------------------------------------------------------------------- sources


def source_stem(source: str) -> str:
    """A file-name-safe name of a source: ``csv:out/fleet.csv`` -> ``fleet``, ``sim:seed=1`` ->
    ``sim_seed_1``; names quarantine files and default outputs."""
    from prognos.data.sources import parse_source

    kind, path = parse_source(source)
    if kind == "sim":
        tail = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
        return f"sim_{tail}" if tail else "sim"
    stem = Path(Path(path.rstrip("/\\")).name)
    while stem.suffix.lower() in _DATA_SUFFIXES:
        stem = stem.with_suffix("")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(stem)).strip("._") or kind


def load_fleet(
    state: CliState, source: str, spec_file: Path | None, events_file: Path | None
) -> FleetData:
    """``load_source`` with an optional FleetSpec YAML, behind a spinner."""
    from prognos.data.sources import load_source, parse_source
    from prognos.fleet import FleetSpec

    parse_source(source)  # a bad KIND: fails before any file is touched
    spec = FleetSpec.from_yaml(spec_file) if spec_file is not None else None
    with state.err.status(f"Loading {escape(source)}"):
        return load_source(source, spec=spec, events=events_file)


# -------------------------------------------------------------------------------------- outputs


def validate_with_quarantine(
    state: CliState, data: FleetData, quarantine: Path | None
) -> tuple[ValidationResult, Path | None]:
    """Validate ``data``; write quarantined rows (with reasons) when there are any.

    Default target ``$PROGNOS_HOME/quarantine/<source-stem>.csv``; returns the path written.
    """
    from prognos.data.validation import validate_readings

    result = validate_readings(data.readings, data.spec)
    if not result.report.quarantined_rows:
        return result, None
    if quarantine is None:
        state.settings.ensure_home()
        quarantine = state.settings.quarantine_dir / f"{source_stem(data.source)}.csv"
    write_table(result.quarantine, quarantine, "csv")
    return result, quarantine


def parse_table_target(target: str, what: str) -> tuple[str, Path]:
    """A ``csv:FILE`` or ``parquet:FILE`` output target."""
    from prognos.data.sources import parse_source

    kind, path = parse_source(target)
    if kind not in ("csv", "parquet"):
        raise DataSourceError(f"{what} is written to csv:FILE or parquet:FILE, not {kind}:")
    if path.endswith(("/", "\\")) or Path(path).is_dir():
        raise DataSourceError(f"{kind}: {path} is a directory; {what} is written to one file")
    return kind, Path(path)


def write_table(frame: pd.DataFrame, path: Path, kind: str) -> Path:
    """Write a frame without its index; I/O and pyarrow errors become DataSourceError.

    Typed frames go to CSV through pyarrow (about 10x faster than pandas on wide feature matrices,
    and exact on reload); frames with object columns (raw quarantined rows) through pandas.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    from pandas.api.types import is_object_dtype

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            frame.to_parquet(path, index=False)
        elif any(is_object_dtype(dtype) for dtype in frame.dtypes):
            frame.to_csv(path, index=False)
        else:
            pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise DataSourceError(f"{kind}: cannot write {path}: {exc}") from exc
    return path


def fmt_int(n: int) -> str:
    return f"{n:,}"


def valid_readings(
    state: CliState, source: str, spec: Path | None, events: Path | None, purpose: str
) -> pd.DataFrame:
    """The source's readings that pass validation (the rest quarantined, counted on stderr);
    an error when none is left to ``purpose``."""
    from prognos.data.validation import validate_readings

    fleet = load_fleet(state, source, spec, events)
    result = validate_readings(fleet.readings, fleet.spec)
    if result.report.quarantined_rows:
        state.err.print(
            f"[yellow]{fmt_int(result.report.quarantined_rows)} rows quarantined (not used)[/]"
        )
    if result.valid.empty:
        raise DataValidationError(f"{source}: no valid rows to {purpose}")
    return result.valid.reset_index(drop=True)
