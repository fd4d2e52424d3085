"""The spool's files on disk: append-only JSON lines, fsynced, locked by the process that owns them.

Several processes (uvicorn workers) may share one spool directory. Each writes its own files
(``spool-<ns>-<pid>-<uuid>-<n>.jsonl``) and holds an exclusive ``flock`` on them while alive. A
leftover file (its owner gone, so unlocked) is taken by locking it and atomically renaming it to
``claimed-...``: whoever loses either race skips the file. What the records mean, and when they
count as written, is the :class:`~prognos.storage.writer.RecordWriter`'s business.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from prognos.storage.records import KINDS, RecordKind

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per spool directory
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Record = tuple[RecordKind, dict[str, Any]]

# A spool file is sealed and a new one started beyond this size, so replay reads bounded files.
ROLL_BYTES = 64 * 1024 * 1024


@dataclass
class SpoolFile:
    """A spool file this process owns: the open handle holds its lock."""

    path: Path
    handle: IO[bytes]
    rows: int = 0


def encode(kind: str, row: dict[str, Any]) -> bytes:
    """One record as a spool line (datetimes as ISO strings)."""
    line = json.dumps({"kind": kind, "row": row}, default=_json_default, separators=(",", ":"))
    return line.encode("utf-8") + b"\n"


class SpoolFiles:
    """This process's spool files in ``directory``: the one being appended to, and the sealed
    or claimed ones waiting to be replayed, oldest first. Not thread-safe: the caller locks."""

    def __init__(self, directory: Path, token: str) -> None:
        self.directory = Path(directory)
        self._token = token
        self._seq = 0
        self._active: SpoolFile | None = None
        self._owned: list[SpoolFile] = []

    def append(self, lines: list[bytes]) -> None:
        """Append and fsync ``lines``; raises :class:`OSError` when the disk refuses."""
        if self._active is None:
            self._active = self._open_active()
        active = self._active
        active.handle.write(b"".join(lines))
        active.handle.flush()
        os.fsync(active.handle.fileno())
        active.rows += len(lines)
        if active.handle.tell() >= ROLL_BYTES:
            self.seal()

    def seal(self) -> None:
        """Stop appending to the active file; it joins the files to replay (still locked)."""
        if self._active is not None:
            self._owned.append(self._active)
            self._active = None

    def oldest(self) -> SpoolFile | None:
        """The next file to replay."""
        return self._owned[0] if self._owned else None

    def records(self, spool: SpoolFile) -> Iterator[tuple[int, bytes, Record | str]]:
        """Every non-empty line of ``spool`` as (line number, line, (kind, row)), or with the
        reason it cannot be read (a torn last line from a crash mid-write, a foreign file)."""
        spool.handle.seek(0)
        for number, line in enumerate(spool.handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                kind = record["kind"]
                if kind not in KINDS or not isinstance(record["row"], dict):
                    raise ValueError(f"unknown record kind {kind!r}")
            except (ValueError, KeyError, TypeError) as err:
                yield number, line, f"{spool.path.name}:{number}: unreadable spool line: {err}"
                continue
            yield number, line, (kind, record["row"])

    def keep_rejected(self, record: dict[str, Any], error: str) -> None:
        """Keep a record that can never be written under ``rejected/``, with the reason."""
        directory = self.directory / "rejected"
        log.error("%s (kept under %s)", error, directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            line = json.dumps({**record, "error": error}, default=str, separators=(",", ":"))
            with (directory / f"rejected-{self._token}.jsonl").open("ab") as handle:
                handle.write(line.encode("utf-8") + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:  # pragma: no cover
            log.exception("cannot keep a rejected record: %r", record)

    def remove(self, spool: SpoolFile) -> None:
        """Delete a replayed file (durably) and let go of it."""
        spool.path.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        spool.handle.close()
        self._owned.remove(spool)

    def claim_leftovers(self) -> list[SpoolFile]:
        """Take spool files whose owners are gone (unlocked): lock, then rename to ``claimed-``.

        Returns the files taken (their ``rows`` are for the caller to count)."""
        if not self.directory.is_dir():
            return []
        mine = {f.path for f in self._owned}
        if self._active is not None:
            mine.add(self._active.path)
        for tmp in self.directory.glob(".tmp-*"):  # a crash between create and rename
            _remove_if_unlocked(tmp)
        candidates = sorted(self.directory.glob("spool-*.jsonl")) + sorted(
            self.directory.glob("claimed-*.jsonl")
        )
        taken = []
        for path in candidates:
            if path in mine:
                continue
            try:
                handle = path.open("a+b")
            except OSError:
                continue
            if not _try_lock(handle):
                handle.close()  # its writer is alive and will replay it
                continue
            target = self._new_name("claimed")
            try:
                path.rename(target)
            except FileNotFoundError:
                handle.close()  # another process took it first
                continue
            _fsync_dir(self.directory)
            claimed = SpoolFile(target, handle)
            self._owned.append(claimed)
            taken.append(claimed)
            log.info("took spool file %s", path.name)
        return taken

    def release(self) -> None:
        """Close (and so unlock) every file; files with rows stay for the next process."""
        self.seal()
        for spool in self._owned:
            spool.handle.close()
        self._owned = []

    def _new_name(self, stem: str) -> Path:
        self._seq += 1
        name = f"{stem}-{time.time_ns():020d}-{self._token}-{self._seq:04d}.jsonl"
        return self.directory / name

    def _open_active(self) -> SpoolFile:
        """A new spool file, locked before it becomes visible under its ``spool-`` name, so no
        other process can take it while this one appends."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self._new_name("spool")
        tmp = final.with_name(f".tmp-{final.name}")
        handle = tmp.open("a+b")
        _try_lock(handle)
        tmp.rename(final)
        _fsync_dir(self.directory)
        return SpoolFile(final, handle)


def _try_lock(handle: IO[bytes]) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_if_unlocked(path: Path) -> None:
    try:
        handle = path.open("a+b")
    except OSError:
        return
    try:
        if _try_lock(handle):
            path.unlink(missing_ok=True)
    finally:
        handle.close()


def _fsync_dir(directory: Path) -> None:
    """Make a create or rename in ``directory`` durable (a no-op where that is impossible)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
