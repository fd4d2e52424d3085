"""Human-readable examples of quarantined rows, one per rule, for the validation report.

Each example names the row (asset, time, index label) and says what an operator would fix: the
value that is not a number, the earlier accepted row a duplicate repeats or that a row goes back
behind, the bound a value crosses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prognos.fleet import ASSET, TIME, FleetSpec


@dataclass
class RowContext:
    """What the examples need to describe a row."""

    readings: pd.DataFrame
    frame: pd.DataFrame
    spec: FleetSpec
    codes: np.ndarray
    time_key: np.ndarray
    row_ok: np.ndarray
    first_pos: np.ndarray
    channels: list[str]


def describe_row(pos: int, rule: str, column: str, detail: str, ctx: RowContext) -> str:
    """One line on why the row at ``pos`` broke ``rule``, naming the row and the value at fault."""
    raw = ctx.readings
    where = f"asset {raw[ASSET].iloc[pos]} time {raw[TIME].iloc[pos]} (row {raw.index[pos]})"
    if rule == "type":
        expected = (
            "a number"
            if column != TIME
            else ("an integer cycle" if ctx.spec.time_kind == "cycle" else "a datetime")
        )
        return f"{where}: {column}={raw[column].iloc[pos]!r} is not {expected}"
    if rule == "missing":
        return f"{where}: {column} is missing"
    if rule == "out_of_order":
        earlier = np.flatnonzero(ctx.row_ok[:pos] & (ctx.codes[:pos] == ctx.codes[pos]))
        latest = int(earlier[np.argmax(ctx.time_key[earlier])])
        return (
            f"{where}: time goes back after time {raw[TIME].iloc[latest]} "
            f"(row {raw.index[latest]}) of this asset"
        )
    if rule == "duplicate":
        first = int(ctx.first_pos[pos])
        if detail == "exact":
            return f"{where}: exact duplicate of row {raw.index[first]}"
        a = ctx.frame.iloc[pos][ctx.channels]
        b = ctx.frame.iloc[first][ctx.channels]
        differ = [
            c for c in ctx.channels if not (a[c] == b[c] or (pd.isna(a[c]) and pd.isna(b[c])))
        ]
        shown = ", ".join(f"{c} {a[c]:g} vs {b[c]:g}" for c in differ[:3])
        return f"{where}: conflicting duplicate of row {raw.index[first]} ({shown})"
    if rule == "out_of_range":
        value = float(ctx.frame[column].iloc[pos])
        channel = ctx.spec.channel(column)
        if not np.isfinite(value):
            return f"{where}: {column}={value} is not finite"
        if channel.max is not None and value > channel.max:
            return f"{where}: {column}={value:g} above max {channel.max:g}"
        return f"{where}: {column}={value:g} below min {channel.min:g}"
    return f"{where}: {rule} {column}"
