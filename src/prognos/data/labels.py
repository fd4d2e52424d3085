"""Training labels from the two data shapes: run-to-failure trajectories and event logs.

Timing convention (both shapes): a reading at time ``t`` is taken during cycle ``t``; an event at
time ``t`` happens at the *end* of cycle ``t``, after that reading. So a failure logged at ``t``
gives the row at ``t`` ``time_to_failure == 0`` (like the last row of a C-MAPSS training
trajectory, ``rul == 0``), and a repair logged at ``t`` ends the life the row at ``t`` belongs to.

Durations are in the time column's unit: cycles for numeric time; for ``datetime64`` time they are
float **hours**, and ``horizon``/``rul_cap`` are then hours too.

Everything is vectorised (``groupby().transform``, ``merge_asof``); readings need not be sorted.
Rows with a missing asset or time get NaN labels (validation normally removes them first).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype, is_timedelta64_dtype

from prognos.data.dataset import FleetData
from prognos.errors import LabelError
from prognos.fleet import ASSET, TIME

_FAILURE, _RESET, _IGNORED = 0, 1, -1


def run_to_failure_labels(
    readings: pd.DataFrame, *, rul_cap: int = 125, horizon: int = 30
) -> pd.DataFrame:
    """RUL labels for trajectories whose last reading is the failure (C-MAPSS training files).

    ``rul`` = asset's last time - time; ``rul_capped`` = min(rul, rul_cap) (the usual piecewise-
    linear target: early life is indistinguishable from healthy); ``failure_within_h`` = rul <=
    horizon as int 0/1. Aligned with ``readings.index``.
    """
    _check_keys(readings)
    last = readings.groupby(ASSET, sort=False)[TIME].transform("max")
    rul = _duration(last - readings[TIME])
    return pd.DataFrame(
        {
            "rul": rul,
            "rul_capped": rul.clip(upper=float(rul_cap)),
            "failure_within_h": (rul <= horizon).astype("int64"),
        },
        index=readings.index,
    )


def event_log_labels(
    readings: pd.DataFrame,
    events: pd.DataFrame,
    *,
    horizon: float = 30,
    failure_events: Iterable[str] = ("failure",),
    reset_events: Iterable[str] = ("repair", "replacement", "maintenance"),
    censored_as_healthy: bool = False,
) -> pd.DataFrame:
    """Survival-style labels from an event log, aligned with ``readings.index``.

    For the row at ``t`` the *next event* is the first failure or reset event at time >= ``t``
    (a failure wins a tie with a reset at the same time: the asset failed, then was fixed; other
    event types are ignored). Columns:

    - ``time_to_failure``: next event time - t if it is a failure, else NaN;
    - ``censored``: True unless the next event is a failure (a reset ends this life: a failure
      after it belongs to the next one; no next event: the data ends first);
    - ``observed_for``: how long the row is followed: up to the failure, else up to
      min(next reset, asset's last reading time);
    - ``failure_within_h``: 1.0 if the failure comes within ``horizon``; 0.0 if the asset is known
      to survive the horizon (failure later, or followed >= horizon without failure); NaN when
      unknown (censored earlier), or 0.0 if ``censored_as_healthy`` (biased towards healthy).

    If ``events`` has a ``component`` column, each component ``c`` also gets
    ``time_to_failure__c`` and ``censored__c``: failures of ``c`` count; resets of ``c`` or
    without a component, and failures without a component, censor; other components are ignored.
    """
    _check_keys(readings)
    missing = [c for c in (ASSET, TIME, "event") if c not in events.columns]
    if missing:
        raise LabelError(f"event log lacks column(s) {missing}")
    failure_set, reset_set = set(failure_events), set(reset_events)
    both = failure_set & reset_set
    if both:
        raise LabelError(f"event type(s) {sorted(both)} are both failure and reset events")

    keys = readings[[ASSET, TIME]]
    events = _align_events(keys, events)
    last = keys.groupby(ASSET, sort=False)[TIME].transform("max")
    is_failure = events["event"].isin(failure_set).to_numpy()
    is_reset = events["event"].isin(reset_set).to_numpy()
    kind = np.where(is_failure, _FAILURE, np.where(is_reset, _RESET, _IGNORED))
    next_kind, to_next, to_last = _next_event(keys, last, events, kind)

    failed = next_kind == _FAILURE
    valid = ~np.isnan(to_last)
    ttf = np.where(failed, to_next, np.nan)
    censor_after = np.where(next_kind == _RESET, np.fmin(to_next, to_last), to_last)
    observed = np.where(failed, to_next, censor_after)
    within = np.full(len(keys), np.nan)
    within[failed & (ttf > horizon)] = 0.0
    within[~failed & valid & (observed >= horizon)] = 0.0
    within[failed & (ttf <= horizon)] = 1.0
    if censored_as_healthy:
        within[np.isnan(within) & valid] = 0.0
    out = {
        "time_to_failure": ttf,
        "censored": ~failed,
        "observed_for": np.where(valid, observed, np.nan),
        "failure_within_h": within,
    }

    if "component" in events.columns:
        component = events["component"]
        no_component = component.isna().to_numpy()
        for name in sorted(component.dropna().unique(), key=str):
            mine = (component == name).to_numpy()
            kind_c = np.where(
                is_failure & mine,
                _FAILURE,
                np.where(
                    (is_reset & (mine | no_component)) | (is_failure & no_component),
                    _RESET,
                    _IGNORED,
                ),
            )
            next_c, to_next_c, _ = _next_event(keys, last, events, kind_c)
            failed_c = next_c == _FAILURE
            out[f"time_to_failure__{name}"] = np.where(failed_c, to_next_c, np.nan)
            out[f"censored__{name}"] = ~failed_c
    return pd.DataFrame(out, index=readings.index)


def labels_for(data: FleetData) -> pd.DataFrame:
    """Labels as the fleet's spec says (``spec.labels``), refusing shapes the data cannot give."""
    rule = data.spec.labels
    if rule.shape == "event_log":
        if data.events is None:
            raise LabelError(
                f"{data.source}: spec {data.spec.name!r} wants event-log labels but the data has "
                "no event log (pass events= or add a <stem>.events.csv sidecar)"
            )
        return event_log_labels(
            data.readings,
            data.events,
            horizon=rule.horizon,
            failure_events=rule.failure_events,
            reset_events=rule.reset_events,
            censored_as_healthy=rule.censored_as_healthy,
        )
    if not data.run_to_failure:
        raise LabelError(
            f"{data.source}: run-to-failure labels need trajectories that end in failure, but this "
            "data stops before failure (e.g. a C-MAPSS test file or live telemetry)"
        )
    return run_to_failure_labels(data.readings, rul_cap=rule.rul_cap, horizon=rule.horizon)


# --------------------------------------------------------------------------------------- helpers


def _check_keys(readings: pd.DataFrame) -> None:
    missing = [c for c in (ASSET, TIME) if c not in readings.columns]
    if missing:
        raise LabelError(f"readings lack column(s) {missing}")
    time = readings[TIME]
    if not (is_numeric_dtype(time) or is_datetime64_any_dtype(time)) or time.dtype == bool:
        raise LabelError(
            f"time column has dtype {time.dtype}, not numeric or datetime: validate readings first"
        )


def _duration(delta: pd.Series) -> pd.Series:
    """Time differences as float: cycles as they are, timedeltas in hours."""
    if is_timedelta64_dtype(delta):
        return delta.dt.total_seconds() / 3600.0
    return delta.astype("float64")


def _align_events(keys: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Give the event log the readings' asset and time dtypes, as ``merge_asof`` requires."""
    events = events.reset_index(drop=True)
    try:
        if events[ASSET].dtype != keys[ASSET].dtype:
            events[ASSET] = events[ASSET].astype(keys[ASSET].dtype)
        numeric = is_numeric_dtype(events[TIME]) and is_numeric_dtype(keys[TIME])
        if events[TIME].dtype != keys[TIME].dtype and not numeric:
            events[TIME] = events[TIME].astype(keys[TIME].dtype)
    except (ValueError, TypeError) as exc:
        raise LabelError(
            f"event log asset/time types ({events[ASSET].dtype}, {events[TIME].dtype}) do not "
            f"match the readings ({keys[ASSET].dtype}, {keys[TIME].dtype}): {exc}"
        ) from exc
    return events


def _next_event(
    keys: pd.DataFrame, last: pd.Series, events: pd.DataFrame, kind: NDArray[np.int_]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per row: kind of the first relevant event at time >= t, time to it, time to last reading.

    Arrays aligned with ``keys`` rows; NaN kind/time when there is no such event.
    """
    relevant = events.loc[kind != _IGNORED, [ASSET, TIME]].assign(_kind=kind[kind != _IGNORED])
    relevant = (
        relevant.dropna(subset=[ASSET, TIME])
        .sort_values([ASSET, TIME, "_kind"], kind="mergesort")
        .drop_duplicates([ASSET, TIME], keep="first")  # failure beats reset at the same time
        .rename(columns={TIME: "_event_time"})
        .sort_values("_event_time", kind="mergesort")
    )
    left = keys.reset_index(drop=True).assign(
        _last=last.reset_index(drop=True), _row=np.arange(len(keys))
    )
    left = left.dropna(subset=[ASSET, TIME])
    if is_numeric_dtype(left[TIME]):  # int cycles vs float event times: compare as float
        left[TIME] = left[TIME].astype("float64")
        left["_last"] = left["_last"].astype("float64")
        relevant["_event_time"] = relevant["_event_time"].astype("float64")
    left = left.sort_values(TIME, kind="mergesort")
    merged = pd.merge_asof(
        left,
        relevant,
        left_on=TIME,
        right_on="_event_time",
        by=ASSET,
        direction="forward",
        allow_exact_matches=True,
    )
    rows = merged["_row"].to_numpy()
    next_kind = np.full(len(keys), np.nan)
    to_next = np.full(len(keys), np.nan)
    to_last = np.full(len(keys), np.nan)
    next_kind[rows] = merged["_kind"].to_numpy(dtype="float64", na_value=np.nan)
    to_next[rows] = _duration(merged["_event_time"] - merged[TIME]).to_numpy(
        dtype="float64", na_value=np.nan
    )
    to_last[rows] = _duration(merged["_last"] - merged[TIME]).to_numpy(
        dtype="float64", na_value=np.nan
    )
    return next_kind, to_next, to_last


def truncate_trajectories(
    readings: pd.DataFrame, *, seed: int = 0, min_cycles: int = 10, max_rul: float | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """A test fleet from run-to-failure data: each asset cut at a random cycle, as in C-MAPSS.

    Returns the truncated readings and the true RUL at each asset's last kept cycle (indexed by
    asset id, ascending). Cuts keep at least ``min_cycles`` readings and, when ``max_rul`` is
    given, leave at most that many cycles to failure.
    """
    _check_keys(readings)
    rng = np.random.default_rng(seed)
    ordered = readings.sort_values([ASSET, TIME], kind="stable")
    sizes = ordered.groupby(ASSET, sort=True).size()
    low = np.minimum(min_cycles, sizes.to_numpy())
    if max_rul is not None:
        low = np.maximum(low, sizes.to_numpy() - int(max_rul))
    keep = rng.integers(low, sizes.to_numpy() + 1)
    position = ordered.groupby(ASSET, sort=True).cumcount().to_numpy()
    limit = np.repeat(keep, sizes.to_numpy())
    cut = ordered[position < limit]
    truth = pd.Series(sizes.to_numpy() - keep, index=sizes.index, name="rul", dtype=float)
    return cut, truth
