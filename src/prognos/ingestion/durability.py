"""What the ingestion core waits for from the record writer, and where the writer spools.

A request is answered only once its records are durable (:func:`wait_durable`), and online state is
rebuilt only from a readings table that holds every acknowledged reading (:func:`seed_state`):
together they are why a crash never loses a reading that was answered 2xx, nor one a new state was
meant to include. The writer's spool lives per database (:func:`spool_dir`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prognos.config import Settings
from prognos.errors import StateStoreError, StorageUnavailableError
from prognos.ingestion.scoring import Scorer
from prognos.storage.database import Database
from prognos.storage.writer import RecordWriter

log = logging.getLogger("prognos.ingestion")


def spool_dir(settings: Settings, db: Database) -> Path:
    """``HOME/spool/<database>``: one directory per database, so that a home shared by services
    logging to different databases never replays one's records into another's."""
    digest = hashlib.sha256(db.display_url.encode()).hexdigest()[:12]
    return settings.home / "spool" / f"{db.dialect}-{digest}"


async def wait_durable(writer: RecordWriter, timeout: float) -> None:
    """Return once every record submitted to ``writer`` so far is committed or spooled, waiting
    on its group commit without blocking the loop; :class:`StorageUnavailableError` after
    ``timeout`` seconds (the records stay queued)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settled() -> None:  # on the writer thread
        loop.call_soon_threadsafe(_resolve, done)

    if not writer.when_settled(writer.ticket(), settled):
        return
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise StorageUnavailableError(
            f"the request's records were not durable within "
            f"{timeout:g} s (the database is slow to answer); "
            "they stay queued and will be stored, and retrying is safe"
        ) from None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def seed_state(
    scorer: Scorer, writer: RecordWriter | None, run: Callable[..., Awaitable[Any]], wait: float
) -> int | None:
    """Rebuild ``scorer``'s online state (``run`` runs a call where the scorer may be used:
    a thread while it is not serving, the compute thread once it is). None when it cannot
    be rebuilt now; the scorer then answers 503 until a later call succeeds.

    The table must hold every acknowledged reading first, so the writer's queue and spool
    are written before the readings are read: otherwise a restart with readings still
    spooled would rebuild a history that lacks them. While the database is down, a state
    store that kept whole states (Redis with its generation) is used as it is.
    """
    replayed = writer is None or await asyncio.to_thread(writer.wait_replayed, wait)
    try:
        if replayed:
            seeded: int = await run(scorer.seed)
            return seeded
        if await run(scorer.resume):
            return 0
    except (StorageUnavailableError, StateStoreError) as exc:
        log.warning("online state not rebuilt yet: %s", exc)
    return None
