"""An event log of failures and maintenance, as operators keep it, recorded as feedback.

The file is CSV with columns ``asset_id, time, event`` and optionally ``notes`` and ``component``
(the failed part, stored as the failure's type). Times are whole cycles or ISO 8601 timestamps
(UTC when they name no zone), one kind per file. Every row is checked before anything is stored,
and every error names the file's line.

Recording is idempotent: a feedback row's id is a hash of (fleet, asset, time, event), so the same
event imported twice (or in two files) is stored once; its notes are the first import's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prognos.data.outcomes import EVENT_COLUMNS, check_events, listed
from prognos.errors import DataSourceError, LabelError
from prognos.fleet import ASSET, TIME

__all__ = ["OPTIONAL_COLUMNS", "event_id", "feedback_rows", "read_event_log"]

OPTIONAL_COLUMNS = ["notes", "component"]
# Cycles are float64 in the features: whole numbers are exact only up to 2**53.
_MAX_CYCLE = 2**53


def read_event_log(path: str | Path) -> pd.DataFrame:
    """The file's events: ``asset_id`` (str), ``time`` (int64 cycles or UTC datetimes),
    ``event``, ``notes`` and ``component`` (None where not given), indexed by line number.

    Raises :class:`LabelError` naming the lines of missing values, unknown event types, times
    that are neither whole cycles nor timestamps (or a mix of both) and repeated events.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataSourceError(f"cannot read event log {path}: {exc}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in EVENT_COLUMNS if c not in raw.columns]
    extra = [c for c in raw.columns if c not in EVENT_COLUMNS + OPTIONAL_COLUMNS]
    if missing or extra:
        raise LabelError(
            f"event log {path}: columns must be {', '.join(EVENT_COLUMNS)}[, "
            f"{', '.join(OPTIONAL_COLUMNS)}]; "
            + "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"unexpected {extra}" if extra else "",
                )
                if part
            )
        )
    frame = raw.astype(object).apply(lambda column: column.str.strip())
    frame = frame.where(frame.notna() & (frame != ""), None)
    frame.index = pd.RangeIndex(2, len(frame) + 2)  # line numbers: the header is line 1
    frame = frame[frame.notna().any(axis=1)]  # blank lines
    for column in OPTIONAL_COLUMNS:
        frame[column] = frame[column].astype(object) if column in frame.columns else None
    frame[ASSET] = frame[ASSET].astype(object)
    frame["event"] = frame["event"].str.lower()
    check_events(frame, source=f"event log {path}", row="line")  # before the times are parsed
    frame[TIME] = _times(frame[TIME], path)
    check_events(frame, source=f"event log {path}", row="line")  # 5 and 5.0 are one time
    return frame[[*EVENT_COLUMNS, *OPTIONAL_COLUMNS]]


def _times(text: pd.Series, path: Path) -> pd.Series:
    """Whole cycles (int64) when every time is a number, else UTC timestamps; never a mix."""
    numbers = pd.to_numeric(text, errors="coerce")
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    is_number, is_stamp = numbers.notna().to_numpy(), stamps.notna().to_numpy() & ~numbers.notna()
    lines = text.index.to_numpy()
    neither = ~is_number & ~is_stamp
    if neither.any():
        raise LabelError(
            f"event log {path}: time at line(s) {listed(lines[neither])} is neither a cycle "
            f"number nor an ISO 8601 timestamp ({text[neither].iloc[0]!r})"
        )
    if is_number.any() and is_stamp.any():
        raise LabelError(
            f"event log {path}: times mix cycle numbers (line(s) {listed(lines[is_number])}) "
            f"and timestamps (line(s) {listed(lines[is_stamp])}): one kind per fleet"
        )
    if is_stamp.all():
        return stamps
    values = numbers.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values % 1 != 0) | (values < 0) | (values > _MAX_CYCLE)
    if bad.any():
        raise LabelError(
            f"event log {path}: cycle at line(s) {listed(lines[bad])} is not a whole number "
            f"from 0 to 2**53 ({text[bad].iloc[0]!r})"
        )
    return pd.Series(values.astype(np.int64), index=text.index)


def event_id(fleet: str, asset: str, time: int, event: str) -> str:
    """The feedback id of one event: the same event always gets the same id."""
    key = "\x1f".join((fleet, asset, str(time), event)).encode()
    return f"fb_{hashlib.sha256(key).hexdigest()[:32]}"


def feedback_rows(events: pd.DataFrame, *, fleet: str, submitted_by: str) -> list[dict[str, Any]]:
    """Feedback records (``records.normalise_record`` form) of :func:`read_event_log`'s
    events: a failure is ``failure_occurred``, every event is dated by ``failure_cycle`` or
    ``failure_time`` (that column's meaning since revision 0005)."""
    stamped = pd.api.types.is_datetime64_any_dtype(events[TIME])
    rows = []
    for asset, time, event, notes, component in events[
        [*EVENT_COLUMNS, *OPTIONAL_COLUMNS]
    ].itertuples(index=False):
        when: datetime | None = pd.Timestamp(time).to_pydatetime() if stamped else None
        key = int(pd.Timestamp(time).value) if stamped else int(time)
        rows.append(
            {
                "id": event_id(fleet, str(asset), key, str(event)),
                "fleet": fleet,
                "asset_id": str(asset),
                "event": str(event),
                "failure_occurred": event == "failure",
                "failure_time": when,
                "failure_cycle": None if stamped else key,
                "failure_type": component if event == "failure" else None,
                "notes": notes,
                "submitted_by": submitted_by,
            }
        )
    return rows
