"""Records in flight (submitted, not yet in the database): tickets, which let a request wait until
its own records are durable, and the index of pending predictions.

Records are numbered as they are submitted and settle (committed, fsynced in the spool, or set
aside as refused) in that same order, so one count says exactly which are durable: a ticket is
the number of records submitted so far, and it is settled once the settled count reaches it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...


class Tickets:
    """Submitted and settled counts, and callbacks waiting for a ticket. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._submitted = 0
        self._settled = 0
        # (ticket, order, callback), smallest ticket first.
        self._waiters: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def issue(self, queue: _Queue, item: Any) -> None:
        """Count one record and queue it, under one lock: the queue's order is the tickets'."""
        with self._cond:
            self._submitted += 1
            queue.put(item)

    def current(self) -> int:
        """A ticket for every record submitted so far (by any thread)."""
        with self._cond:
            return self._submitted

    @property
    def outstanding(self) -> int:
        """Records submitted and not settled yet."""
        with self._cond:
            return self._submitted - self._settled

    def settle(self, count: int) -> None:
        """``count`` more records settled: wake waiters and run the callbacks now due."""
        with self._cond:
            self._settled += count
            self._cond.notify_all()
            while self._waiters and self._waiters[0][0] <= self._settled:
                callback = heapq.heappop(self._waiters)[2]
                try:
                    callback()
                except Exception:  # a waiter's bug must not stop the writer
                    log.exception("a settle callback failed")

    def is_settled(self, ticket: int) -> bool:
        with self._cond:
            return self._settled >= ticket

    def when_settled(self, ticket: int, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (on the settling thread: keep it short) once ``ticket`` is settled;
        False, and no call, when it is already."""
        with self._cond:
            if self._settled >= ticket:
                return False
            heapq.heappush(self._waiters, (ticket, next(self._order), callback))
            return True

    def wait(self, ticket: int, timeout: float) -> bool:
        """Block until ``ticket`` is settled; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._settled >= ticket, timeout)


class PendingPredictions:
    """Predictions queued or spooled but not yet committed, by id, so ``/explain`` and
    ``/feedback`` find them meanwhile. Bounded: the oldest are forgotten first. Thread-safe."""

    def __init__(self, cap: int = 100_000) -> None:
        self._cap = cap
        self._rows: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows[str(row["id"])] = row
            while len(self._rows) > self._cap:
                self._rows.popitem(last=False)

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._rows.get(prediction_id)
            return None if row is None else dict(row)

    def discard(self, prediction_id: str) -> None:
        with self._lock:
            self._rows.pop(prediction_id, None)
