"""Monitoring's reads and writes: a run with its figures, and the recent window it is computed on.

A run and its metric rows are written in one transaction, so a reader never sees a run without
its figures. The window queries read one fleet's readings, predictions, feedback and dead letters
by arrival time (``received_at`` / ``created_at``); frames come out with UTC-aware datetimes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Table, false, func, select, true
from sqlalchemy.engine import RowMapping

from prognos.storage.database import Database
from prognos.storage.models import (
    DeadLetter,
    Feedback,
    MonitoringMetric,
    MonitoringRun,
    Prediction,
    Reading,
)

__all__ = [
    "Metric",
    "dead_letter_counts",
    "json_safe",
    "last_reading_times",
    "latest_run",
    "latest_runs_by_model",
    "list_runs",
    "new_run_id",
    "run_metrics",
    "window_feedback",
    "window_predictions",
    "window_readings",
    "write_run",
]

_RUNS: Table = MonitoringRun.__table__  # type: ignore[assignment]
_METRICS: Table = MonitoringMetric.__table__  # type: ignore[assignment]
_READINGS: Table = Reading.__table__  # type: ignore[assignment]
_PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]
_FEEDBACK: Table = Feedback.__table__  # type: ignore[assignment]
_DEAD_LETTERS: Table = DeadLetter.__table__  # type: ignore[assignment]

PREDICTION_COLUMNS = [
    "id",
    "asset_id",
    "time",
    "created_at",
    "failure_probability",
    "rul",
    "rul_lower",
    "rul_upper",
    "should_inspect",
]
FEEDBACK_COLUMNS = [
    "id",
    "asset_id",
    "failure_occurred",
    "failure_time",
    "failure_cycle",
    "created_at",
    "prediction_time",
]


@dataclass(frozen=True)
class Metric:
    """One figure of a run: ``name`` (a Prometheus metric name), ``label`` ("" or e.g. a
    column), ``value`` (None where it is undefined, e.g. a recall without positives)."""

    name: str
    value: float | None
    label: str = ""


def new_run_id() -> str:
    return f"mon_{uuid.uuid4().hex}"


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def json_safe(value: Any) -> Any:
    """Plain JSON: non-finite floats become null (PostgreSQL's json refuses NaN), numpy scalars
    and tuples their Python forms."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        value = item()
    if isinstance(value, float):
        return _finite(value)
    return value


# -------------------------------------------------------------------------------------- runs


def write_run(db: Database, run: Mapping[str, Any], metrics: Iterable[Metric]) -> str:
    """Insert the run (columns of ``monitoring_runs``; ``id`` made when absent) and its metrics
    in one transaction; NaN values are stored as NULL. Returns the run id."""
    row = dict(run)
    row.setdefault("id", new_run_id())
    row["share_drifted"] = _finite(row.get("share_drifted")) or 0.0
    row["summary"] = json_safe(row.get("summary") or {})
    values = [
        {"run_id": row["id"], "name": m.name, "label": m.label, "value": _finite(m.value)}
        for m in metrics
    ]
    with db.begin("writing a monitoring run") as conn:
        conn.execute(_RUNS.insert(), [row])
        if values:
            conn.execute(_METRICS.insert(), values)
    return str(row["id"])


def _run_filter(stmt: Any, fleet: str | None, model_name: str | None, kind: str | None) -> Any:
    r = _RUNS.c
    if fleet is not None:
        stmt = stmt.where(r.fleet == fleet)
    if model_name is not None:
        stmt = stmt.where(r.model_name == model_name)
    if kind is not None:
        stmt = stmt.where(r.kind == kind)
    return stmt


def list_runs(
    db: Database,
    limit: int = 20,
    *,
    fleet: str | None = None,
    model_name: str | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first (without their metrics)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    r = _RUNS.c
    stmt = _run_filter(select(_RUNS), fleet, model_name, kind)
    stmt = stmt.order_by(r.started_at.desc(), r.id.desc()).limit(limit)
    with db.translate_errors("listing monitoring runs"), db.engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def latest_run(
    db: Database,
    *,
    fleet: str | None = None,
    model_name: str | None = None,
    kind: str | None = None,
) -> dict[str, Any] | None:
    """The newest run matching the filters, or None."""
    runs = list_runs(db, 1, fleet=fleet, model_name=model_name, kind=kind)
    return runs[0] if runs else None


def latest_runs_by_model(db: Database, kind: str = "live") -> list[dict[str, Any]]:
    """The newest run of each (fleet, model name) of ``kind``, each with its ``metrics``: what
    ``/metrics`` exports. Two statements; consistent without one snapshot because a run and
    its metrics are written together and never change."""
    r = _RUNS.c
    rank = (
        func.row_number()
        .over(partition_by=(r.fleet, r.model_name), order_by=(r.started_at.desc(), r.id.desc()))
        .label("recency")
    )
    ranked = select(_RUNS, rank).where(r.kind == kind).subquery()
    stmt = select(*(ranked.c[c.name] for c in _RUNS.columns)).where(ranked.c.recency == 1)
    m = _METRICS.c
    with db.translate_errors("reading the latest monitoring runs"), db.engine.connect() as conn:
        runs = [dict(row) for row in conn.execute(stmt).mappings()]
        ids = [run["id"] for run in runs]
        by_run: dict[str, list[dict[str, Any]]] = {}
        if ids:
            stmt = select(_METRICS).where(m.run_id.in_(ids)).order_by(m.id)
            for row in conn.execute(stmt).mappings():
                by_run.setdefault(row["run_id"], []).append(_metric(row))
    for run in runs:
        run["metrics"] = by_run.get(run["id"], [])
    return sorted(runs, key=lambda run: (run["fleet"], run["model_name"]))


def _metric(row: RowMapping) -> dict[str, Any]:
    return {"name": row["name"], "label": row["label"], "value": row["value"]}


def run_metrics(db: Database, run_id: str) -> list[dict[str, Any]]:
    """A run's figures as ``{name, label, value}``, in the order they were written."""
    m = _METRICS.c
    stmt = select(_METRICS).where(m.run_id == run_id).order_by(m.id)
    with db.translate_errors("reading monitoring metrics"), db.engine.connect() as conn:
        return [_metric(row) for row in conn.execute(stmt).mappings()]


# ------------------------------------------------------------------------------------ window


def window_readings(
    db: Database, fleet: str, start: datetime, end: datetime, limit: int
) -> pd.DataFrame:
    """The fleet's readings received in ``[start, end]``, at most the newest ``limit``: columns
    ``asset_id``, ``time``, ``received_at``, then one per channel (missing values NaN), sorted
    by asset then time."""
    r = _READINGS.c
    stmt = (
        select(r.asset_id, r.time, r.received_at, r["values"])
        .where(r.fleet == fleet, r.received_at >= start, r.received_at <= end)
        .order_by(r.received_at.desc(), r.id.desc())
        .limit(limit)
    )
    with db.translate_errors("reading the monitoring window"), db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return pd.DataFrame(columns=["asset_id", "time", "received_at"])
    values = pd.DataFrame.from_records([row[3] for row in rows]).astype("float64")
    frame = pd.DataFrame(
        {
            "asset_id": [row[0] for row in rows],
            "time": [int(row[1]) for row in rows],
            "received_at": pd.to_datetime([row[2] for row in rows], utc=True),
        }
    )
    frame = pd.concat([frame, values], axis=1)
    return frame.sort_values(["asset_id", "time"], kind="stable").reset_index(drop=True)


def window_predictions(
    db: Database,
    fleet: str,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
    limit: int,
    shadow: bool | None = False,
) -> pd.DataFrame:
    """One model version's predictions for the fleet created in ``[start, end]``, at most the
    newest ``limit``; :data:`PREDICTION_COLUMNS`, oldest first.

    ``shadow``: False (the default) for the predictions it served as champion, True for those it
    made as challenger in the champion's shadow (the promotion gate's), None for both.
    """
    p = _PREDICTIONS.c
    shadowed = [] if shadow is None else [p.shadow == (true() if shadow else false())]
    stmt = (
        select(*(p[c] for c in PREDICTION_COLUMNS))
        .where(
            p.fleet == fleet,
            p.model_name == model_name,
            p.model_version == model_version,
            p.created_at >= start,
            p.created_at <= end,
            *shadowed,
        )
        .order_by(p.created_at.desc(), p.id.desc())
        .limit(limit)
    )
    with db.translate_errors("reading the monitored predictions"), db.engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(stmt)]
    rows.reverse()
    frame = pd.DataFrame.from_records(rows, columns=PREDICTION_COLUMNS)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["time"] = frame["time"].astype("int64")
    for column in ("failure_probability", "rul", "rul_lower", "rul_upper"):
        frame[column] = frame[column].astype("float64")
    frame["should_inspect"] = frame["should_inspect"].astype(bool)
    return frame


def window_feedback(db: Database, fleet: str, asset_ids: Iterable[str]) -> pd.DataFrame:
    """Every feedback row of ``asset_ids`` in the fleet, whenever it arrived (labels come late),
    with the time of the prediction it names (``prediction_time``, null without one):
    :data:`FEEDBACK_COLUMNS`."""
    f, p = _FEEDBACK.c, _PREDICTIONS.c
    assets = sorted({str(a) for a in asset_ids})
    rows: list[tuple[Any, ...]] = []
    with db.translate_errors("reading feedback"), db.engine.connect() as conn:
        for chunk in _chunks(assets):
            stmt = (
                select(
                    f.id,
                    f.asset_id,
                    f.failure_occurred,
                    f.failure_time,
                    f.failure_cycle,
                    f.created_at,
                    p.time.label("prediction_time"),
                )
                .select_from(_FEEDBACK.outerjoin(_PREDICTIONS, p.id == f.prediction_id))
                .where(f.fleet == fleet, f.asset_id.in_(chunk))
                .order_by(f.created_at, f.id)
            )
            rows.extend(tuple(row) for row in conn.execute(stmt))
    frame = pd.DataFrame.from_records(rows, columns=FEEDBACK_COLUMNS)
    frame["failure_time"] = pd.to_datetime(frame["failure_time"], utc=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["failure_occurred"] = frame["failure_occurred"].astype(bool)
    for column in ("failure_cycle", "prediction_time"):
        frame[column] = frame[column].astype("Int64")
    return frame


def last_reading_times(
    db: Database, fleet: str, model_name: str, model_version: str, since: datetime
) -> dict[str, int]:
    """The newest stored reading time (whole history, not the window) of each asset the model
    version predicted for since ``since``: how far each is known to have run.

    A correlated ``MAX`` per asset, which both databases answer from the end of the
    (fleet, asset_id, time) key: one index probe per asset, not a scan of its history.
    """
    r, p = _READINGS.c, _PREDICTIONS.c
    assets = (
        select(p.asset_id)
        .where(
            p.fleet == fleet,
            p.model_name == model_name,
            p.model_version == model_version,
            p.created_at >= since,
        )
        .distinct()
        .subquery()
    )
    newest = (
        select(func.max(r.time))
        .where(r.fleet == fleet, r.asset_id == assets.c.asset_id)
        .scalar_subquery()
    )
    stmt = select(assets.c.asset_id, newest)
    with db.translate_errors("reading the last reading times"), db.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(stmt) if row[1] is not None}


def dead_letter_counts(db: Database, fleet: str, start: datetime, end: datetime) -> dict[str, int]:
    """Messages set aside by the stream ingester in ``[start, end]``, by reason."""
    d = _DEAD_LETTERS.c
    stmt = (
        select(d.reason, func.count())
        .where(d.fleet == fleet, d.received_at >= start, d.received_at <= end)
        .group_by(d.reason)
    )
    with db.translate_errors("counting dead letters"), db.engine.connect() as conn:
        return {str(row[0]): int(row[1]) for row in conn.execute(stmt)}


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    # Bound the bound parameters of one IN list (SQLite caps them per statement).
    for i in range(0, len(items), size):
        yield items[i : i + size]
