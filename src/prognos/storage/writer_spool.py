"""The record writer's spool side: what happens to records the database cannot take now.

A batch written while the database is down is appended (fsynced) to this process's spool file and
counts as settled; the files of processes that are gone are taken over, and their predictions
indexed so a lookup still finds them; once the database answers, every owned file is replayed
oldest first and deleted only after its rows are committed. The files themselves (names, locks,
takeover) are :mod:`.spool`'s; when to spool and when to replay is the
:class:`~prognos.storage.writer.RecordWriter`'s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prognos.errors import StorageError, StorageUnavailableError
from prognos.storage.inflight import PendingPredictions, Tickets
from prognos.storage.records import normalise_record
from prognos.storage.spool import Record, SpoolFile, SpoolFiles, encode

# The writer's logger: these lines are part of its story (and log settings for it still apply).
log = logging.getLogger("prognos.storage.writer")


class WriterSpool:
    """One writer's spool files with the counts ``/health`` shows (spooled, rejected).

    ``lock`` guards the files (the writer thread and ``close()`` both append); the counts are
    guarded by the writer's ``cond``, which is notified when spooled records are replayed.
    """

    def __init__(
        self,
        spool_dir: Path,
        token: str,
        *,
        cond: threading.Condition,
        tickets: Tickets,
        pending: PendingPredictions,
        batch_size: int,
    ) -> None:
        self.files = SpoolFiles(spool_dir, token)
        self.lock = threading.Lock()
        self.spooled = 0
        self.rejected = 0
        self._cond = cond
        self._tickets = tickets
        self._pending = pending
        self._batch_size = batch_size

    def spool(self, items: list[Record]) -> bool:
        """Append ``items`` to this writer's spool file and fsync; call with ``lock`` held.

        False when the disk refuses too: the items are then not settled, the caller keeps them.
        """
        if not items:
            return True
        lines = []
        for item in items:
            try:
                lines.append(encode(*item))
            except (TypeError, ValueError) as err:  # pragma: no cover - rows are normalised
                self.reject({"kind": item[0], "row": repr(item[1])}, f"cannot spool: {err}")
        try:
            self.files.append(lines)
        except OSError:
            log.exception("cannot spool %d records; keeping them in memory", len(items))
            return False
        with self._cond:
            self.spooled += len(lines)
        self._tickets.settle(len(items))
        return True

    def reject(self, record: dict[str, Any], error: str) -> None:
        """Set aside a record that can never be written (see ``SpoolFiles.keep_rejected``)."""
        self.files.keep_rejected(record, error)
        with self._cond:
            self.rejected += 1

    def claim_leftovers(self) -> None:
        """Take the spool files of processes that are gone; count and index their records."""
        for claimed in self.files.claim_leftovers():
            claimed.rows = self._index(claimed)
            with self._cond:
                self.spooled += claimed.rows
            log.info("took %d spooled records from %s", claimed.rows, claimed.path.name)

    def _index(self, spool: SpoolFile) -> int:
        """Count a claimed file's records; remember its predictions for ``pending_prediction``."""
        count = 0
        for _, _, record in self.files.records(spool):
            count += 1
            if isinstance(record, str) or record[0] != "prediction":
                continue  # an unreadable line is reported when replayed
            try:
                row = normalise_record("prediction", record[1])
            except (KeyError, TypeError, StorageError):
                continue
            self._pending.add(row)
        return count

    def replay(
        self, write: Callable[[Sequence[Record]], None], past_deadline: Callable[[], bool]
    ) -> StorageUnavailableError | None:
        """Write every owned spool file with ``write``, oldest first; stops at an outage (its
        error is returned) or at the deadline."""
        with self.lock:
            self.files.seal()
        while (spool := self.files.oldest()) is not None:
            if past_deadline():
                return None
            outage = self._replay_file(spool, write)
            if outage is not None:
                return outage
        return None

    def _replay_file(
        self, spool: SpoolFile, write: Callable[[Sequence[Record]], None]
    ) -> StorageUnavailableError | None:
        items: list[Record] = []
        for _, line, record in self.files.records(spool):
            if isinstance(record, str):
                line_text = line.decode("utf-8", "replace")
                self.reject({"file": spool.path.name, "line": line_text}, record)
            else:
                items.append(record)
        for start in range(0, len(items), self._batch_size):
            try:
                write(items[start : start + self._batch_size])
            except StorageUnavailableError as err:
                return err
        self.files.remove(spool)
        with self._cond:
            self.spooled -= spool.rows
            self._cond.notify_all()
        log.info("replayed %d spooled records from %s", len(items), spool.path.name)
        return None

    def release(self) -> None:
        """Close (and so unlock) every file this writer holds; call with ``lock`` held.

        Files with rows stay on disk for the next writer to take.
        """
        self.files.release()
