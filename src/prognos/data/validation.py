"""Batch validation with quarantine: every row of a readings batch ends up valid or quarantined.

Nothing is silently dropped (``len(valid) + len(quarantine) == len(readings)``), so a bad batch
costs its bad rows, not the whole batch, and every rejected row keeps its raw values and a reason
that an operator can act on.

Per-cell rules (``missing``, ``out_of_range``) are declared in a pandera schema built from the
fleet spec (:func:`readings_schema`) and run on cells typed by :mod:`prognos.data.coercion`; the
cross-row rules (``duplicate``, ``out_of_order``) and the batch-level findings (constant and stuck
sensors, :mod:`prognos.data.stuck_sensors`) are vectorised pandas/numpy code.
The verdict on a row's key matches the online store fed row by row: a row is a duplicate or out of
order relative to the earlier rows that were *accepted*, never relative to rejected ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel

from prognos.data.coercion import (
    asset_as_given,
    coerce_number,
    coerce_time,
    comparable_time,
    missing_assets,
    time_dtype,
)
from prognos.data.quarantine_examples import RowContext, describe_row
from prognos.data.stuck_sensors import constant_channels, stuck_warnings
from prognos.errors import ConfigError, SchemaError
from prognos.fleet import ASSET, TIME, FleetSpec

with warnings.catch_warnings():
    # pandera imports pyspark.pandas whenever PySpark is installed (the `spark` extra), and
    # PySpark 4 warns at that import that it does not fully support pandas 3: not ours to print.
    # (Its pandas backend, imported at the first validation otherwise, imports it again.)
    warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
    import pandera.backends.pandas.builtin_checks  # noqa: F401
    import pandera.errors as pa_errors
    import pandera.pandas as pa

# Rule names, in the order they appear in a row's ``reason``.
RULES: Final = ("type", "missing", "duplicate", "out_of_order", "out_of_range")
_RULE_RANK: Final = {rule: i for i, rule in enumerate(RULES)}

_QUARANTINE_EXTRA: Final = ("row", "reason")


class RuleCount(BaseModel):
    """How many rows one rule quarantined, with one human-readable sample."""

    rule: str
    rows: int
    example: str


class ValidationReport(BaseModel):
    """What happened to a batch: counts per rule and batch-level warnings."""

    total_rows: int
    valid_rows: int
    quarantined_rows: int
    by_rule: list[RuleCount]
    warnings: list[str]
    constant_sensors: list[str]

    def rule_rows(self, rule: str) -> int:
        """Rows quarantined by ``rule`` (0 when it never fired)."""
        return next((c.rows for c in self.by_rule if c.rule == rule), 0)

    def summary(self) -> str:
        lines = [
            f"{self.total_rows} rows: {self.valid_rows} valid, {self.quarantined_rows} quarantined"
        ]
        lines += [f"  {c.rule}: {c.rows} rows, e.g. {c.example}" for c in self.by_rule]
        if self.warnings:
            lines.append(f"{len(self.warnings)} warnings:")
            lines += [f"  {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class ValidationResult:
    """Valid rows (coerced dtypes, input order and index) and quarantined rows (raw + reason)."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    report: ValidationReport


def readings_schema(spec: FleetSpec) -> pa.DataFrameSchema:
    """Declarative per-cell rules of a fleet's readings: non-null keys, finite in-range channels.

    Asset id and time carry no dtype here: asset ids stay as given and the time dtype depends on
    ``spec.time_kind`` and the data (int cycles, float cycles, datetimes of any unit/zone).
    """
    columns: dict[str, pa.Column] = {
        ASSET: pa.Column(nullable=False),
        TIME: pa.Column(nullable=False),
    }
    for channel in (*spec.settings, *spec.sensors):
        checks = [pa.Check(np.isfinite, name="finite")]
        if channel.min is not None and channel.max is not None:
            checks.append(pa.Check.in_range(channel.min, channel.max))
        elif channel.min is not None:
            checks.append(pa.Check.ge(channel.min))
        elif channel.max is not None:
            checks.append(pa.Check.le(channel.max))
        columns[channel.name] = pa.Column("float64", checks=checks, coerce=True, nullable=False)
    return pa.DataFrameSchema(columns, name=f"{spec.name} readings", strict=False)


def validate_readings(
    readings: pd.DataFrame, spec: FleetSpec, *, stuck_run: int = 20
) -> ValidationResult:
    """Split a canonical-column readings batch into valid and quarantined rows.

    Raises :class:`SchemaError` when required columns are missing (nothing can be checked then).
    ``stuck_run`` is the number of consecutive equal readings of one asset that makes a sensor
    suspect (a warning, not a quarantine).
    """
    if stuck_run < 2:
        raise ConfigError(f"stuck_run must be at least 2, got {stuck_run}")
    _check_columns(readings, spec)
    notes: list[str] = []
    extras = [c for c in readings.columns if c not in set(spec.columns)]
    if extras:
        notes.append(f"extra columns kept but not validated: {', '.join(map(str, extras))}")

    n = len(readings)
    channels = [*spec.setting_names, *spec.sensor_names]
    tags: list[pd.DataFrame] = []  # (pos, rule, column, detail) of every broken rule

    # Coercion per cell is done here, not by pandera: when pandera's coercion fails on some cells it
    # leaves the whole column uncoerced and its range checks on that column then error out instead
    # of reporting per cell. pd.to_numeric(errors="coerce") keeps the rest of the column usable.
    asset_missing = missing_assets(readings[ASSET])
    time_values, time_type, time_missing = coerce_time(readings[TIME], spec.time_kind)
    tags.append(_tag_cells(time_type, "type", TIME))
    coerced: dict[str, Any] = {
        ASSET: readings[ASSET].where(~asset_missing).to_numpy(),
        TIME: time_values if isinstance(time_values, np.ndarray) else time_values.array,
    }
    type_fail = {TIME: time_type}
    for name in channels:
        values, bad_type, _ = coerce_number(readings[name])
        coerced[name] = values
        type_fail[name] = bad_type
        tags.append(_tag_cells(bad_type, "type", name))
    frame = pd.DataFrame(coerced, copy=False)
    frame.index = pd.RangeIndex(n)  # pandera reports positions, whatever the input's index

    tags.append(_pandera_tags(readings_schema(spec), frame, type_fail))
    cell_tags = pd.concat(tags, ignore_index=True)
    row_ok = np.ones(n, dtype=bool)
    row_ok[cell_tags["pos"].to_numpy(dtype=np.int64)] = False

    # Cross-row rules: pandera checks see one column or one frame at a time and cannot express
    # "relative to the earlier accepted rows of the same asset", so these are grouped pandas ops.
    keyed = ~(asset_missing | time_missing | time_type)
    codes = np.full(n, -1, dtype=np.int64)
    if keyed.any():
        codes[keyed] = pd.factorize(readings[ASSET].to_numpy()[keyed])[0]
    time_key = comparable_time(time_values)
    out_of_order = _out_of_order(codes, time_key, keyed, row_ok)
    duplicate, first_pos = _duplicates(codes, time_key, keyed, row_ok & ~out_of_order)
    key_tags = [_tag_cells(out_of_order, "out_of_order", TIME)]
    if duplicate.any():
        mat = frame[channels].to_numpy(dtype=np.float64)
        dup_pos = np.flatnonzero(duplicate)
        a, b = mat[dup_pos], mat[first_pos[dup_pos]]
        exact = ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)
        key_tags.append(
            pd.DataFrame(
                {
                    "pos": dup_pos,
                    "rule": "duplicate",
                    "column": "",
                    "detail": np.where(exact, "exact", "conflicting"),
                }
            )
        )
    all_tags = pd.concat([cell_tags, *key_tags], ignore_index=True)
    valid_mask = row_ok & ~out_of_order & ~duplicate

    valid = _valid_frame(readings, frame, valid_mask, spec)
    quarantine, reasons_warning = _quarantine_frame(readings, all_tags, channels)
    if reasons_warning:
        notes.append(reasons_warning)

    constant = constant_channels(valid, channels)
    notes += [
        f"{name} is constant ({valid[name].iloc[0]:g}) across the batch: it carries no information"
        for name in constant
    ]
    notes += stuck_warnings(valid, codes[valid_mask], spec, constant, stuck_run)

    context = RowContext(readings, frame, spec, codes, time_key, row_ok, first_pos, channels)
    by_rule = _by_rule(all_tags, context)
    report = ValidationReport(
        total_rows=n,
        valid_rows=len(valid),
        quarantined_rows=len(quarantine),
        by_rule=by_rule,
        warnings=notes,
        constant_sensors=constant,
    )
    return ValidationResult(valid=valid, quarantine=quarantine, report=report)


def _check_columns(readings: pd.DataFrame, spec: FleetSpec) -> None:
    repeated = sorted({str(c) for c in readings.columns[readings.columns.duplicated()]})
    if repeated:
        raise SchemaError(f"readings of fleet {spec.name!r} repeat columns: {repeated}")
    missing = [c for c in spec.columns if c not in readings.columns]
    if missing:
        raise SchemaError(
            f"readings of fleet {spec.name!r} lack required columns {missing} "
            "(rename source columns with FleetSpec.rename_map() first)"
        )


def _tag_cells(mask: np.ndarray, rule: str, column: str, detail: str = "") -> pd.DataFrame:
    pos = np.flatnonzero(mask)
    return pd.DataFrame({"pos": pos, "rule": rule, "column": column, "detail": detail})


def _pandera_tags(
    schema: pa.DataFrameSchema, frame: pd.DataFrame, type_fail: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Run the schema lazily and turn its failure cases into per-row tags."""
    try:
        schema.validate(frame, lazy=True, inplace=True)
    except pa_errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return _tag_cells(np.zeros(0, dtype=bool), "", "")
    if cases["index"].isna().any():
        unplaced = cases[cases["index"].isna()]
        raise SchemaError(f"readings failed schema checks as a whole:\n{unplaced.to_string()}")
    check = cases["check"].astype(str)
    rule = np.select(
        [
            check.eq("not_nullable"),
            check.str.startswith(("finite", "in_range", "greater_than", "less_than")),
            check.str.startswith(("dtype", "coerce_dtype")),
        ],
        ["missing", "out_of_range", "type"],
        default="schema",
    )
    tags = pd.DataFrame(
        {
            "pos": cases["index"].to_numpy(dtype=np.int64),
            "rule": rule,
            "column": cases["column"].astype(str).to_numpy(),
            "detail": "",
        }
    )
    # Cells that failed coercion are NaN now; they are already tagged "type", not "missing".
    already_typed = np.zeros(len(tags), dtype=bool)
    for column, bad in type_fail.items():
        on_column = (tags["column"] == column).to_numpy() & (tags["rule"] == "missing").to_numpy()
        already_typed[on_column] = bad[tags["pos"].to_numpy()[on_column]]
    return tags[~already_typed]


def _out_of_order(
    codes: np.ndarray, time_key: np.ndarray, keyed: np.ndarray, accepted: np.ndarray
) -> np.ndarray:
    """Rows whose time is below the latest time of their asset's earlier accepted rows."""
    out = np.zeros(len(codes), dtype=bool)
    if not keyed.any():
        return out
    pos = np.flatnonzero(keyed)
    low = -np.inf if time_key.dtype.kind == "f" else np.iinfo(np.int64).min
    t = time_key[pos]
    seen = pd.Series(np.where(accepted[pos], t, low))
    group = codes[pos]
    running = seen.groupby(group).cummax()
    before = running.groupby(group).shift(1, fill_value=low).to_numpy()
    out[pos[t < before]] = True
    return out


def _duplicates(
    codes: np.ndarray, time_key: np.ndarray, keyed: np.ndarray, candidate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose (asset, time) was taken by an earlier accepted row; that row's position."""
    n = len(codes)
    dup = np.zeros(n, dtype=bool)
    first = np.full(n, -1, dtype=np.int64)
    if not keyed.any():
        return dup, first
    pos = np.flatnonzero(keyed)
    claim = np.where(candidate[pos], pos, n)
    keys = pd.DataFrame({"a": codes[pos], "t": time_key[pos], "claim": claim})
    first_claim = keys.groupby(["a", "t"], sort=False)["claim"].transform("min").to_numpy()
    repeated = first_claim < pos
    dup[pos[repeated]] = True
    first[pos[repeated]] = first_claim[repeated]
    return dup, first


def _valid_frame(
    readings: pd.DataFrame, frame: pd.DataFrame, mask: np.ndarray, spec: FleetSpec
) -> pd.DataFrame:
    pos = np.flatnonzero(mask)
    required = set(spec.columns)
    data: dict[Any, Any] = {}
    for name in readings.columns:
        if name == ASSET:
            data[name] = asset_as_given(readings[ASSET], pos).array
        elif name == TIME:
            data[name] = time_dtype(frame[TIME].iloc[pos], spec.time_kind).array
        elif name in required:
            data[name] = frame[name].to_numpy()[pos]
        else:
            data[name] = readings[name].array[pos]
    return pd.DataFrame(data, index=readings.index[pos], columns=readings.columns)


def _quarantine_frame(
    readings: pd.DataFrame, tags: pd.DataFrame, channels: list[str]
) -> tuple[pd.DataFrame, str]:
    """Raw rows with ``row`` (original index label) and ``reason`` ("rule:detail;...")."""
    order = [ASSET, TIME, *channels, ""]
    column_rank = {name: i for i, name in enumerate(order)}
    ordered = tags.assign(
        rank=tags["rule"].map(_RULE_RANK).fillna(len(RULES)) * len(order)
        + tags["column"].map(column_rank).fillna(len(order) - 1),
        text=tags["rule"] + ":" + tags["column"].where(tags["column"] != "", tags["detail"]),
    )
    ordered = ordered.sort_values(["pos", "rank"], kind="stable").drop_duplicates(["pos", "text"])
    # Join each row's texts with ";" in one C-level pass (groupby(...).agg(";".join) is a Python
    # call per quarantined row: seconds on a batch where every row is bad).
    tag_pos = ordered["pos"].to_numpy(dtype=np.int64)
    text = ordered["text"].to_numpy(dtype=object)
    first = np.ones(len(tag_pos), dtype=bool)
    first[1:] = tag_pos[1:] != tag_pos[:-1]
    starts = np.flatnonzero(first)
    joined = np.where(first, text, ";" + text)
    reasons = np.add.reduceat(joined, starts) if len(starts) else np.array([], dtype=object)
    pos = tag_pos[starts]
    clash = [c for c in _QUARANTINE_EXTRA if c in readings.columns]
    raw = readings.drop(columns=clash).iloc[pos].astype(object)
    raw.insert(0, "row", readings.index[pos])
    raw["reason"] = reasons
    warning = f"extra columns {clash} left out of the quarantine (its own columns)" if clash else ""
    return raw, warning


def _by_rule(tags: pd.DataFrame, ctx: RowContext) -> list[RuleCount]:
    """Rows per rule (a row counts once per rule) with the first offending row as the example."""
    if tags.empty:
        return []
    first = tags.sort_values("pos", kind="stable").drop_duplicates("rule")
    rows = tags.drop_duplicates(["pos", "rule"]).groupby("rule").size()
    counts = []
    for rule in sorted(rows.index, key=lambda r: _RULE_RANK.get(r, len(RULES))):
        tag = first[first["rule"] == rule].iloc[0]
        counts.append(
            RuleCount(
                rule=rule,
                rows=int(rows[rule]),
                example=describe_row(int(tag["pos"]), rule, tag["column"], tag["detail"], ctx),
            )
        )
    return counts
