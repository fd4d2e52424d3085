"""The off-request-path writer: predictions are served while the database is down, nothing is lost.

Requests hand records to :meth:`RecordWriter.submit`, which only appends to an in-memory queue and
returns at once. One daemon thread writes them with the idempotent inserts of :mod:`.repository`,
by group commit: it takes everything queued at that moment as one transaction, so under load one
commit serves many requests and no record waits for a timer. When the database cannot be
reached, batches are appended (JSON lines, fsynced) to a spool file and the writer is "degraded";
every ``retry_interval`` it pings, and once the database answers it replays the spool in order,
deleting each file only after its rows are committed. Replays are idempotent, so a crash
part-way through one only means the next replay repeats some inserts.

A record is *settled* once it is committed, or fsynced in a spool file, or set aside as refused;
:meth:`ticket` and :meth:`when_settled` (see :mod:`.tickets`) tell a caller when its records are
durable: the service acknowledges a request only then, so that a crash, even ``kill -9``, never
loses what it answered 200 for.

Several processes (uvicorn workers) may share one spool directory; the files, their locks and
how a dead process's files are taken over are in :mod:`.spool`, the counting, indexing and
replaying of what is spooled in :mod:`.writer_spool`.

Records the database refuses (a bad value, not an outage) are isolated row by row and appended to
``rejected/`` with the error, so one bad record never blocks the others.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from prognos.errors import StorageUnavailableError
from prognos.storage.database import Database
from prognos.storage.inflight import PendingPredictions, Tickets
from prognos.storage.records import RecordKind, normalise_record
from prognos.storage.repository import insert_records
from prognos.storage.spool import Record
from prognos.storage.writer_spool import WriterSpool

__all__ = ["RecordWriter"]

log = logging.getLogger(__name__)


class RecordWriter:
    """Writes readings, predictions, feedback and audit events off the request path.

    ``submit`` never blocks on the database and never raises for database trouble. Use one writer
    per process, ``start()`` it at start-up and ``close()`` it at shutdown.
    """

    def __init__(
        self,
        db: Database,
        spool_dir: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        retry_interval: float = 2.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._db = db
        self._spool_dir = Path(spool_dir)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_interval = retry_interval
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

        self._queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._cond = threading.Condition()  # guards the health flag and the spool counters
        self._tickets = Tickets()  # submitted and settled (committed, spooled or rejected)
        self._pending = PendingPredictions()
        self._healthy = True
        self._leftovers_done = threading.Event()  # files of earlier processes replayed

        self._spooler = WriterSpool(
            self._spool_dir,
            self._token,
            cond=self._cond,
            tickets=self._tickets,
            pending=self._pending,
            batch_size=batch_size,
        )
        self._stash: list[Record] = []  # batches that could be neither written nor spooled

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._closed = False
        self._next_maintain = 0.0

    # ------------------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the writer thread; it first replays spool files left by earlier processes."""
        if self._thread is not None:
            raise RuntimeError("RecordWriter.start() called twice")
        if self._closed:
            raise RuntimeError("RecordWriter is closed")
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="prognos-record-writer", daemon=True)
        self._thread.start()

    def submit(
        self, kind: RecordKind, row: dict[str, Any], *, normalised: bool = False
    ) -> dict[str, Any]:
        """Queue one record; returns it as it will be stored (id and timestamps filled in).

        Raises :class:`StorageError` only for a malformed record, never for database trouble.
        ``normalised=True`` is for rows built in :func:`normalise_record`'s output form by
        prognos' own code (the service's reading and prediction logs, tested equal to it): the
        check is skipped, as it would cost the event loop about a tenth of a request.
        """
        record = row if normalised else normalise_record(kind, row)
        if kind == "prediction":
            self._pending.add(record)
        self._tickets.issue(self._queue, (kind, record))
        if self._closed:
            # Late records at shutdown: straight to a spool file, the next process replays them.
            # (Queue first, check second: close() drains after setting ``_closed``, so every
            # record is taken by one of the two.)
            late = self._drain_queue()
            if late:
                log.warning("%d records submitted after close(): spooled", len(late))
                with self._spooler.lock:
                    self._spool(late)
                    self._spooler.release()
        return dict(record)

    def ticket(self) -> int:
        """A ticket for every record submitted so far (by any thread): see :meth:`when_settled`."""
        return self._tickets.current()

    def when_settled(self, ticket: int, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (on the writer thread: keep it short) once every record up to
        ``ticket`` is committed, spooled or refused; False, and no call, when that is so already.
        """
        return self._tickets.when_settled(ticket, callback)

    def wait_replayed(self, timeout: float) -> bool:
        """Wait until every record submitted so far and every spooled one, this process's and
        those earlier processes left, is in the database: only then does the table hold every
        acknowledged reading (what rebuilding online state needs). False at once while the
        database is down, and on timeout."""
        deadline = time.monotonic() + timeout
        if not self._leftovers_done.wait(timeout):
            return False
        if not self.flush(max(0.0, deadline - time.monotonic())):
            return False
        with self._cond:
            self._cond.wait_for(
                lambda: not self._healthy or self._spooler.spooled == 0,
                max(0.0, deadline - time.monotonic()),
            )
            return self._healthy and self._spooler.spooled == 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record submitted so far is committed or spooled; False on timeout."""
        target = self._tickets.current()
        if self._tickets.is_settled(target):
            return True
        self._queue.put(None)  # wake the thread at once
        return self._tickets.wait(target, timeout)

    def status(self) -> dict[str, Any]:
        """For ``/health``: database ``ok``/``down``, records queued, records in spool files,
        records the database refused (set aside under ``rejected/``)."""
        with self._cond:
            return {
                "database": "ok" if self._healthy else "down",
                "queued": self._tickets.outstanding,
                "spooled": self._spooler.spooled,
                "rejected": self._spooler.rejected,
            }

    @property
    def rejected(self) -> int:
        """Records the database refused (kept under ``rejected/`` in the spool directory)."""
        return self._spooler.rejected

    def pending_prediction(self, prediction_id: str) -> dict[str, Any] | None:
        """A prediction that is queued or spooled but not yet in the database, else None."""
        return self._pending.get(prediction_id)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue (to the database, or to the spool what cannot be written) and stop.

        Returns within about ``timeout`` seconds: when the time is up, the rest is spooled without
        trying the database.
        """
        if self._closed:
            return
        self._deadline = time.monotonic() + max(timeout - 0.5, timeout * 0.5)
        self._stop.set()
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - stuck in a database call
                log.warning("record writer did not stop in %.1fs; spooling the queue", timeout)
        self._closed = True
        leftovers = self._drain_queue()
        with self._spooler.lock:
            if leftovers:
                self._spool(leftovers)
            if thread is None or not thread.is_alive():
                self._spooler.release()

    def __enter__(self) -> RecordWriter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            self._guard(self._startup)
            self._leftovers_done.set()
            while True:
                self._guard(self._step)
                drained = self._queue.empty() and not self._stash
                if self._stop.is_set() and (drained or self._past_deadline()):
                    break  # past the deadline, ``finally`` spools what is left
            if self._healthy and not self._past_deadline():
                self._guard(self._replay)  # leave nothing behind that can be written now
        finally:
            with self._spooler.lock:
                self._spool(self._stash + self._drain_queue())
                self._spooler.release()

    def _guard(self, step: Callable[[], None]) -> None:
        """Run one step; an unexpected error is logged and retried later, never fatal: a dead
        writer thread would silently drop every later record."""
        try:
            step()
        except Exception:
            log.exception("record writer: unexpected error; records are kept and retried")
            self._stop.wait(min(self._retry_interval, 1.0))

    def _startup(self) -> None:
        self._maintain()  # up: take and replay what earlier processes left
        if not self._healthy:
            self._spooler.claim_leftovers()  # down: take them now, so pending_prediction finds them

    def _step(self) -> None:
        batch, self._stash = self._stash + self._take(), []
        try:
            self._handle(batch)
        except Exception:
            self._stash = batch + self._stash
            raise
        if time.monotonic() >= self._next_maintain and not self._past_deadline():
            self._maintain()

    def _take(self) -> list[Record]:
        """The next batch: the first record to arrive (waiting at most ``flush_interval``, so
        the thread also wakes to ping and replay), then whatever else is queued by then, up to
        ``batch_size``. No timer: requests wait for their records to settle, and under load the
        queue fills while the previous batch commits (group commit)."""
        try:
            first = self._queue.get(timeout=self._flush_interval)
        except queue.Empty:
            return []
        if first is None:
            return []
        batch = [first]
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                continue
            batch.append(item)
        return batch

    def _drain_queue(self) -> list[Record]:
        items: list[Record] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if item is not None:
                items.append(item)

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _handle(self, batch: list[Record]) -> None:
        if not batch:
            return
        if not self._healthy or self._past_deadline():
            with self._spooler.lock:
                self._spool(batch)
            return
        try:
            self._write(batch, settle=True)
        except StorageUnavailableError as err:
            self._set_down(err)
            with self._spooler.lock:
                self._spool(batch)

    def _write(self, items: Sequence[Record], *, settle: bool, normalised: bool = True) -> None:
        """Commit ``items`` in one transaction; rows the database refuses are set aside.

        Queued rows were normalised by ``submit``; rows read back from a spool file were not
        (``normalised=False``: their datetimes are ISO strings again).
        """
        groups: dict[RecordKind, list[dict[str, Any]]] = {}
        for kind, row in items:
            groups.setdefault(kind, []).append(row)
        try:
            insert_records(self._db, groups, normalised=normalised)
        except StorageUnavailableError:
            raise
        except Exception:  # a StorageError, or a driver error SQLAlchemy does not wrap
            # Not an outage: some row is refused. Find it; commit the others.
            for item in items:
                try:
                    insert_records(self._db, {item[0]: [item[1]]}, normalised=normalised)
                except StorageUnavailableError:
                    raise  # the caller spools (or keeps) the whole batch: replays are idempotent
                except Exception as err:
                    kind, row = item
                    self._spooler.reject(
                        {"kind": kind, "row": row}, f"database refused a {kind} record: {err}"
                    )
        self._done(items, settle=settle)

    def _done(self, items: Sequence[Record], *, settle: bool) -> None:
        for kind, row in items:
            if kind == "prediction":
                self._pending.discard(str(row.get("id")))
        if settle:
            self._tickets.settle(len(items))

    # ------------------------------------------------------------------------------ health

    def _set_down(self, err: Exception | None) -> None:
        self._next_maintain = time.monotonic() + self._retry_interval
        with self._cond:
            was_healthy, self._healthy = self._healthy, False
            self._cond.notify_all()
        if was_healthy:
            log.warning(
                "database %s unavailable, spooling records under %s: %s",
                self._db.display_url,
                self._spool_dir,
                err or "ping failed",
            )

    def _maintain(self) -> None:
        """Every ``retry_interval``: ping; when the database answers, replay what is spooled."""
        self._next_maintain = time.monotonic() + self._retry_interval
        if not self._db.ping():
            self._set_down(None)
            return
        with self._cond:
            was_down, self._healthy = not self._healthy, True
            self._cond.notify_all()
        if was_down:
            log.info(
                "database %s is back; replaying %d spooled records",
                self._db.display_url,
                self._spooler.spooled,
            )
        self._spooler.claim_leftovers()
        self._replay()

    # ------------------------------------------------------------------------------ spool files

    def _spool(self, items: list[Record]) -> None:
        """Append ``items`` to this writer's spool file and fsync; call with the spool's lock held.

        If the disk refuses too, the items stay in memory and are tried again.
        """
        if not self._spooler.spool(items):
            self._stash = items + self._stash

    def _replay(self) -> None:
        """Write every owned spool file to the database, oldest first; stops at an outage."""
        outage = self._spooler.replay(self._write_spooled, self._past_deadline)
        if outage is not None:
            self._set_down(outage)

    def _write_spooled(self, items: Sequence[Record]) -> None:
        self._write(items, settle=False, normalised=False)
