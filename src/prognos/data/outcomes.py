"""Operator feedback becomes training labels: an event log from the feedback rows, then exact
labels for each life of each asset's stored history.

Timing follows :mod:`prognos.data.labels`: a reading at ``t`` is taken during cycle ``t``, an event
at ``t`` happens at the end of it. So a failure at ``T`` gives the row at ``T`` ``rul == 0``, and a
repair at ``T`` ends the life the row at ``T`` belongs to. Durations are cycles, or hours for
timestamped fleets (``horizon`` and ``rul_cap`` too).

**Lives.** A repair or a replacement ends an asset's life and starts the next. A life that ends in
a reported failure at ``T`` labels its rows exactly: ``rul = T - t``, ``rul_capped = min(rul,
rul_cap)``, ``failure_within_h = rul <= horizon``; rows after the failure and before the next reset
are dropped (what the asset did then is unknown). A failure and a reset at the same time: it
failed, then was fixed.

**Censored lives** (no failure reported) are followed until the latest of their last reading,
the reset that ends them and any inspection in them: none of those saw a failure. The trainers
need exact capped-RUL targets, so only rows followed for at least ``rul_cap`` (and more than
``horizon``) are kept: their RUL is at least ``rul_cap``, so ``rul_capped == rul_cap`` exactly
and ``failure_within_h == 0`` (``rul`` itself stays NaN: unknown). Later rows are dropped. Kept
rows are always a prefix of their life, and the features are causal (a row depends only on its
asset's past), so dropping a life's trailing rows leaves the kept rows' features unchanged.

Each life becomes its own training asset, ``f"{asset}:{life}"`` (life = resets before it), so its
features start afresh after a repair; :attr:`Lives.groups` keeps the asset, so that
cross-validation can keep two lives of one asset on the same side of a fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

from prognos.errors import LabelError
from prognos.fleet import ASSET, TIME
from prognos.storage.models import FEEDBACK_EVENTS, RESET_EVENTS

__all__ = [
    "EVENT_COLUMNS",
    "FeedbackEvents",
    "Lives",
    "check_events",
    "events_from_feedback",
    "life_labels",
    "listed",
    "spec_events",
]

EVENT_COLUMNS = [ASSET, TIME, "event"]
NS_PER_HOUR = 3_600 * 10**9


# ----------------------------------------------------------------------------- the event log


@dataclass(frozen=True)
class FeedbackEvents:
    """The event log made from a fleet's feedback, and what could not go into it."""

    events: pd.DataFrame  # asset_id, time, event; sorted by asset, time, event
    rows: int  # feedback rows read
    untimed: int  # rows without a time of the fleet's kind: they label nothing
    duplicates: int  # events reported again (same asset, time and event): kept once


def events_from_feedback(feedback: pd.DataFrame, *, time_kind: str) -> FeedbackEvents:
    """The event log of feedback rows (``prognos.storage.training.fleet_feedback``).

    A row's event is its ``event`` (null: "failure" when ``failure_occurred``, else
    "inspection"); a failure reported with a repair or replacement (``failure_occurred`` and
    ``event`` a reset) is both events at that time. Its time is ``failure_cycle`` for fleets
    counted in cycles, ``failure_time`` for timestamped ones; an inspection without one is dated
    by the prediction it names, as in monitoring.
    """
    if time_kind not in ("cycle", "timestamp"):
        raise LabelError(f"time_kind must be 'cycle' or 'timestamp', got {time_kind!r}")
    occurred = feedback["failure_occurred"].to_numpy(dtype=bool)
    event = (
        feedback["event"]
        .astype(object)
        .where(feedback["event"].notna(), np.where(occurred, "failure", "inspection"))
    )
    unknown = ~event.isin(FEEDBACK_EVENTS).to_numpy()
    if unknown.any():
        raise LabelError(
            f"feedback with unknown event type(s) {sorted(set(map(str, event[unknown])))}: "
            f"{listed(feedback['id'].to_numpy()[unknown])}; known: {', '.join(FEEDBACK_EVENTS)}"
        )
    stamped = time_kind == "timestamp"
    own = feedback["failure_time"] if stamped else feedback["failure_cycle"]
    predicted = feedback["prediction_time"]
    if stamped:  # one resolution on both sides, or the fill below would cast
        own = pd.to_datetime(own, utc=True).dt.as_unit("ns")
        predicted = pd.to_datetime(predicted, unit="ns", utc=True)
    failed = occurred | (event == "failure").to_numpy()
    reset = event.isin(RESET_EVENTS).to_numpy()
    inspected = (event == "inspection").to_numpy() & ~failed
    when = own.where(~inspected, own.fillna(predicted)) if inspected.any() else own
    parts = [
        pd.DataFrame({ASSET: feedback[ASSET][mask], TIME: when[mask], "event": kind})
        for mask, kind in (
            (failed, "failure"),
            (reset, event[reset]),
            (inspected, "inspection"),
        )
    ]
    log = pd.concat(parts, ignore_index=True)
    untimed_rows = set(np.flatnonzero(when.isna().to_numpy() & (failed | reset | inspected)))
    log = log[log[TIME].notna()]
    deduped = log.drop_duplicates(EVENT_COLUMNS)
    deduped = deduped.astype({ASSET: object, "event": object})
    if not stamped:
        deduped[TIME] = deduped[TIME].astype("int64")
    deduped = deduped.sort_values(EVENT_COLUMNS, kind="mergesort").reset_index(drop=True)
    return FeedbackEvents(
        events=deduped,
        rows=len(feedback),
        untimed=len(untimed_rows),
        duplicates=len(log) - len(deduped),
    )


def check_events(events: pd.DataFrame, *, source: str = "event log", row: str = "row") -> None:
    """Refuse an event log that cannot label honestly, naming the problem and its rows (index
    labels, called ``row``): missing columns or values, unknown event types, the same event
    twice."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise LabelError(f"{source} lacks column(s) {missing}")
    labels = events.index.to_numpy()
    for column in EVENT_COLUMNS:
        empty = events[column].isna().to_numpy()
        if empty.any():
            raise LabelError(f"{source}: no {column} at {row}(s) {listed(labels[empty])}")
    kinds = events["event"].astype(str)
    unknown = ~kinds.isin(FEEDBACK_EVENTS).to_numpy()
    if unknown.any():
        raise LabelError(
            f"{source}: unknown event type(s) {sorted(set(kinds[unknown]))} at {row}(s) "
            f"{listed(labels[unknown])}; known: {', '.join(FEEDBACK_EVENTS)}"
        )
    keys = events[EVENT_COLUMNS].astype({ASSET: str})
    twice = keys.duplicated(keep=False).to_numpy()
    if twice.any():
        first = keys[twice].iloc[0]
        same = (keys == first).all(axis=1).to_numpy()
        raise LabelError(
            f"{source}: the same event twice: {first['event']} of asset {first[ASSET]!r} at "
            f"{first[TIME]} ({row}s {listed(labels[same])}); "
            f"{int(keys.duplicated().sum())} {row}(s) in all repeat an earlier one"
        )


def listed(values: Sequence[object] | NDArray[np.generic], most: int = 5) -> str:
    """``a, b, c`` (and N more): a short list for an error message."""
    items = [str(v) for v in values]
    more = f" (and {len(items) - most} more)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def spec_events(
    events: pd.DataFrame, *, failure_events: Sequence[str], reset_events: Sequence[str]
) -> pd.DataFrame:
    """A source's event log in its spec's names as lives' events: the spec's failure events
    become "failure", its reset events "repair", other events are dropped and an event repeated
    (same asset, time and kind) is kept once. Retraining and the Spark training set both label
    an event-log fleet through this, then :func:`life_labels`."""
    kind = np.select(
        [events["event"].isin(failure_events), events["event"].isin(reset_events)],
        ["failure", "repair"],
        "",
    )
    mapped = events.assign(event=kind)
    return mapped[mapped["event"] != ""].drop_duplicates([ASSET, TIME, "event"])


# ----------------------------------------------------------------------------------- lives


@dataclass
class Lives:
    """The labelled rows of every life, and what was labelled, kept or dropped."""

    readings: pd.DataFrame  # the kept rows; asset_id is the life's id, "<asset>:<life>"
    labels: pd.DataFrame  # rul (NaN for censored rows), rul_capped, failure_within_h
    groups: pd.Series  # the asset each kept row's life belongs to
    counts: dict[str, int] = field(default_factory=dict)


def life_labels(
    readings: pd.DataFrame, events: pd.DataFrame, *, horizon: float, rul_cap: float
) -> Lives:
    """Split each asset's readings into lives at its resets and label them (module docstring).

    ``events``: ``asset_id, time, event`` with events among ``FEEDBACK_EVENTS``, times of the
    readings' kind (cycles, or datetimes: naive ones are UTC). Events of assets without readings
    are counted (``events_unmatched``) and otherwise ignored. Kept rows come sorted by life id
    then time, with their original index.
    """
    if horizon <= 0 or rul_cap <= 0:
        raise LabelError(f"horizon and rul_cap must be positive, got {horizon} and {rul_cap}")
    lacking = [c for c in (ASSET, TIME) if c not in readings.columns]
    if lacking:
        raise LabelError(f"readings lack column(s) {lacking}")
    check_events(events)
    t, stamped = _clock(readings[TIME], "readings")
    if np.isnan(t).any() or readings[ASSET].isna().any():
        raise LabelError("readings have missing asset ids or times: validate them first")
    et, events_stamped = _clock(events[TIME], "event log")
    if len(events) and len(readings) and stamped != events_stamped:
        kinds = {True: "timestamps", False: "cycles"}
        raise LabelError(
            f"event log times are {kinds[events_stamped]} but the readings count {kinds[stamped]}"
        )
    assets = readings[ASSET].astype(str).to_numpy()
    codes, uniques = pd.factorize(assets)
    ecodes = pd.Index(uniques).get_indexer(pd.Index(events[ASSET].astype(str)))
    kind = events["event"].astype(str).to_numpy()
    matched = ecodes >= 0

    def of(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        return ecodes[matched & mask], et[matched & mask]

    resets, failures = of(np.isin(kind, RESET_EVENTS)), of(kind == "failure")
    inspections = of(kind == "inspection")
    prev_reset = _asof(codes, t, *resets, forward=False)
    next_reset = _asof(codes, t, *resets, forward=True)
    prev_failure = _asof(codes, t, *failures, forward=False)
    next_failure = _asof(codes, t, *failures, forward=True)

    # Rows after a failure that no reset followed: unknown what the asset was then.
    after = ~np.isnan(prev_failure) & ~(prev_reset >= prev_failure)
    failed = ~after & ~np.isnan(next_failure) & ~(next_reset < next_failure)
    censored = ~after & ~failed
    life = _resets_before(codes, t, *resets)

    # A censored life is followed up to its last reading, its closing reset, its inspections.
    key = pd.MultiIndex.from_arrays([codes, life])
    until = pd.Series(np.fmax(t, np.nan_to_num(next_reset, nan=-np.inf)), index=key)
    inspected_in = pd.MultiIndex.from_arrays(
        [inspections[0], _resets_before(*inspections, *resets)]
    )
    seen = pd.Series(inspections[1], index=inspected_in)
    until = pd.concat([until, seen]).groupby(level=[0, 1]).max()
    followed = until.reindex(key).to_numpy() - t
    known_healthy = censored & (followed >= rul_cap) & (followed > horizon)
    keep = failed | known_healthy

    rul = np.where(failed, next_failure - t, np.nan)
    labels = pd.DataFrame(
        {
            "rul": rul,
            "rul_capped": np.where(failed, np.minimum(rul, rul_cap), float(rul_cap)),
            "failure_within_h": np.where(failed, rul <= horizon, False).astype("int64"),
        }
    )
    life_id = np.char.add(np.char.add(assets.astype(str), ":"), life.astype(str)).astype(object)
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((t[rows], life_id[rows].astype(str)))]
    kept = readings.iloc[rows].assign(**{ASSET: life_id[rows]})
    segment = pd.DataFrame({"code": codes, "life": life, "failed": failed, "kept": keep})
    by_life = segment[~after].groupby(["code", "life"])[["failed", "kept"]].any()
    counts = {
        "lives_failed": int(by_life["failed"].sum()),
        "lives_negative": int((~by_life["failed"] & by_life["kept"]).sum()),
        "lives_censored": int((~by_life["kept"]).sum()),
        "rows_failed": int(failed.sum()),
        "rows_negative": int(known_healthy.sum()),
        "rows_censored": int((censored & ~known_healthy).sum()),
        "rows_after_failure": int(after.sum()),
        "events_unmatched": int((~matched).sum()),
    }
    return Lives(
        readings=kept,
        labels=labels.iloc[rows].set_axis(kept.index),
        groups=pd.Series(assets[rows], index=kept.index, dtype=object),
        counts=counts,
    )


def _clock(values: pd.Series, what: str) -> tuple[NDArray[np.float64], bool]:
    """Times as float: cycles as they are, datetimes as hours since the epoch (UTC); and whether
    they are datetimes."""
    if is_datetime64_any_dtype(values):
        index = pd.DatetimeIndex(values)
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        hours = index.as_unit("ns").asi8 / NS_PER_HOUR
        hours[index.isna()] = np.nan
        return hours.astype(np.float64), True
    if is_numeric_dtype(values) and not is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan), False
    if len(values) == 0:
        return np.zeros(0), False
    raise LabelError(f"{what} times have dtype {values.dtype}, neither numbers nor datetimes")


def _match(
    codes: NDArray[np.intp],
    times: NDArray[np.float64],
    event_codes: NDArray[np.intp],
    event_times: NDArray[np.float64],
    *,
    forward: bool,
) -> NDArray[np.intp]:
    """Per row, the position (in the events sorted by asset then time) of the same asset's first
    event at or after its time (``forward``) or its last event before it; -1 for none."""
    order = np.lexsort((event_times, event_codes))
    left = pd.DataFrame({"c": codes, "t": times, "row": np.arange(len(codes))}).sort_values("t")
    right = pd.DataFrame(
        {"c": event_codes[order], "t": event_times[order], "pos": np.arange(len(order))}
    ).sort_values("t", kind="mergesort")
    merged = pd.merge_asof(
        left,
        right,
        on="t",
        by="c",
        direction="forward" if forward else "backward",
        allow_exact_matches=forward,
    )
    out = np.full(len(codes), -1, dtype=np.intp)
    out[merged["row"].to_numpy()] = merged["pos"].fillna(-1).to_numpy(dtype=np.intp)
    return out


def _asof(
    codes: NDArray[np.intp],
    times: NDArray[np.float64],
    event_codes: NDArray[np.intp],
    event_times: NDArray[np.float64],
    *,
    forward: bool,
) -> NDArray[np.float64]:
    """The time of :func:`_match`'s event, NaN for none."""
    pos = _match(codes, times, event_codes, event_times, forward=forward)
    if len(event_times) == 0:
        return np.full(len(codes), np.nan)
    ordered = event_times[np.lexsort((event_times, event_codes))]
    return np.where(pos >= 0, ordered[np.maximum(pos, 0)], np.nan)


def _resets_before(
    codes: NDArray[np.intp],
    times: NDArray[np.float64],
    reset_codes: NDArray[np.intp],
    reset_times: NDArray[np.float64],
) -> NDArray[np.int64]:
    """How many of the asset's resets came strictly before each time: the life it is in."""
    pos = _match(codes, times, reset_codes, reset_times, forward=False)
    order = np.lexsort((reset_times, reset_codes))
    sorted_codes = reset_codes[order]
    # Resets before position p of the same asset: p minus the asset's first position, plus one.
    first = np.searchsorted(sorted_codes, sorted_codes, side="left")
    before = np.arange(len(order)) - first + 1
    return np.where(pos >= 0, before[np.maximum(pos, 0)] if len(order) else 0, 0).astype(np.int64)
