"""Per-cell coercion of a raw readings batch, and the way back to the input's dtypes.

Validation needs every cell as a typed value (float channels, float cycles or datetimes) and, per
cell, whether it was missing or simply not of that type: those are different quarantine reasons.
Coercion is done here per cell rather than by pandera, so one bad cell costs its row, not its
column. The valid rows then get their asset ids and cycles back as the integers they were given as.
"""

from __future__ import annotations

import warnings
from typing import Final

import numpy as np
import pandas as pd

# Strings that mean "no value" rather than "not a number".
_NULL_TOKENS: Final = frozenset({"", "nan", "na", "n/a", "null", "none", "nat"})


def _null_token(values: pd.Series) -> np.ndarray:
    """Which cells are blank or spell a null ("NaN", "null", ...): missing, not mistyped."""
    text = values.astype(str).str.strip().str.lower()
    return text.isin(_NULL_TOKENS).to_numpy(dtype=bool)


def missing_assets(raw: pd.Series) -> np.ndarray:
    """Which asset ids are missing: NaN/None, or text that spells a null."""
    missing = raw.isna().to_numpy(dtype=bool, copy=True)
    if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw)):
        is_text = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if is_text.any():
            missing[is_text] |= _null_token(raw[is_text])
    return missing


def coerce_number(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 values, cells that are not numbers, cells that are missing."""
    missing = raw.isna().to_numpy(dtype=bool, copy=True)
    if pd.api.types.is_bool_dtype(raw) or (
        pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_complex_dtype(raw)
    ):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros_like(missing), missing
    if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_timedelta64_dtype(raw):
        return np.full(len(raw), np.nan), ~missing, missing
    numbers = pd.to_numeric(raw.astype(object), errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    failed = np.isnan(values) & ~missing
    _null_tokens_are_missing(raw, failed, missing)
    return values, failed, missing


def coerce_time(raw: pd.Series, kind: str) -> tuple[pd.Series | np.ndarray, np.ndarray, np.ndarray]:
    """Time values (float cycles or a datetime Series), cells not coercible, cells missing."""
    if kind == "cycle":
        values, bad, missing = coerce_number(raw)
        bad |= ~np.isfinite(values) & ~np.isnan(values)
        return np.where(bad, np.nan, values), bad, missing
    missing = raw.isna().to_numpy(dtype=bool, copy=True)
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw.reset_index(drop=True), np.zeros_like(missing), missing
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        # Bare numbers are not timestamps: their epoch and unit are unknown, so guessing would
        # silently misplace every reading.
        return pd.Series(pd.NaT, index=pd.RangeIndex(len(raw))), ~missing, missing
    parsed = _parse_datetimes(raw.astype(object).reset_index(drop=True))
    failed = parsed.isna().to_numpy(dtype=bool) & ~missing
    _null_tokens_are_missing(raw, failed, missing)
    return parsed, failed, missing


def _null_tokens_are_missing(raw: pd.Series, failed: np.ndarray, missing: np.ndarray) -> None:
    """Cells that failed to parse but spell a null ("NA", "null", ...) are missing, not bad: moved
    from ``failed`` to ``missing`` in place."""
    if failed.any():
        null_like = _null_token(raw[failed])
        idx = np.flatnonzero(failed)
        missing[idx[null_like]] = True
        failed[idx[null_like]] = False


def _parse_datetimes(raw: pd.Series) -> pd.Series:
    """Fast path with one inferred format; per-element parsing only when that fails."""
    try:
        with warnings.catch_warnings():  # "could not infer format": it then parses per element
            warnings.simplefilter("ignore", UserWarning)
            return pd.to_datetime(raw)
    except (ValueError, TypeError, OverflowError):
        pass
    try:
        return pd.to_datetime(raw, errors="coerce", format="mixed")
    except (ValueError, TypeError):  # mixed UTC offsets
        return pd.to_datetime(raw, errors="coerce", format="mixed", utc=True)


def comparable_time(time_values: pd.Series | np.ndarray) -> np.ndarray:
    """Comparable time: float cycles, or int64 ticks for datetimes (exact, unlike float ns)."""
    if isinstance(time_values, np.ndarray):
        return time_values
    return pd.DatetimeIndex(time_values).asi8


def asset_as_given(column: pd.Series, pos: np.ndarray) -> pd.Series:
    """Undo what missing ids did to the column: ints turned float or object become ints again."""
    values = column.iloc[pos]
    if pd.api.types.is_float_dtype(values) and column.isna().any():
        floats = values.to_numpy(dtype=np.float64)
        if np.all(np.mod(floats, 1) == 0):
            return values.astype(np.int64)
        return values
    if values.dtype == object:
        return values.infer_objects()
    return values


def time_dtype(values: pd.Series, kind: str) -> pd.Series:
    """Whole-number cycles back to int64 (coercion made them float); datetimes as they are."""
    if kind == "cycle":
        floats = values.to_numpy(dtype=np.float64)
        if np.all(np.mod(floats, 1) == 0) and np.all(np.abs(floats) < 2**62):
            return values.astype(np.int64)
    return values
