"""How the shadow turns its queued events into scorer jobs, in the order the champion saw them.

Events arrive as the champion's threads offer them: a reading, or a request to score an asset at a
time, which may come after that asset's later readings. Here each request is moved right after its
own reading, repeats are dropped, and consecutive items of a kind become one scorer job (see
:mod:`prognos.ingestion.shadow` for the shadow itself).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from prognos.ingestion.scoring import Kind

# ("reading", reading, asset, time) or ("score", asset, time, created_at of the champion's)
Event = tuple[str, Any, Any, Any]


def ordered(events: Sequence[Event]) -> list[Event]:
    """``events`` with each score request right after its own reading when that reading is
    among them (later readings of the asset may have been queued before the request), and
    repeated requests left out."""
    position = {(e[2], e[3]): i for i, e in enumerate(events) if e[0] == "reading"}
    after: dict[int, list[Event]] = collections.defaultdict(list)
    moved: set[int] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, event in enumerate(events):
        if event[0] != "score":
            continue
        key = (event[1], event[2])
        at = position.get(key)
        if key in seen:
            moved.add(i)
        elif at is not None and at < i:
            after[at].append(event)
            moved.add(i)
        seen.add(key)
    out: list[Event] = []
    for i, event in enumerate(events):
        if i not in moved:
            out.append(event)
        out.extend(after.get(i, ()))
    return out


def jobs(events: Sequence[Event]) -> list[tuple[Kind, list[list[Event]]]]:
    """Ordered events as scorer jobs, consecutive items of a kind together: a reading followed
    by its own score request is one ``predict`` item (its features are computed once, not by
    ``ingest`` and again by ``current``), another reading ``ingest``, another request
    ``current``. Each item is its events: the last one is the score request, if any."""
    out: list[tuple[Kind, list[list[Event]]]] = []
    i = 0
    while i < len(events):
        event = events[i]
        after = events[i + 1] if i + 1 < len(events) else None
        kind: Kind
        if event[0] == "score":
            kind, group = "current", [event]
        elif after is not None and after[0] == "score" and after[1:3] == event[2:4]:
            kind, group = "predict", [event, after]
        else:
            kind, group = "ingest", [event]
        i += len(group)
        if out and out[-1][0] == kind:
            out[-1][1].append(group)
        else:
            out.append((kind, [group]))
    return out
