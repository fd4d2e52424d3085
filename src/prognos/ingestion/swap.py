"""Swapping the served scorer for a new one without losing a reading (``IngestionCore.install``).

Readings keep arriving while the new state is seeded from the readings table. The batcher
journals them from a point where everything accepted before is queued for the database; the
writer is flushed, the table read, and the journal replayed into the new state on the compute
thread, where the swap then happens between two batches. So every reading this process accepted
is in the new state once, and requests in flight finish on the model they started with.

With several workers sharing Redis each polls and swaps on its own, so one may still accept
readings on the old model after another built the new model's states. The seed (and, for
journaled readings the other worker overtook, a second seed after the swap) rebuilds such assets
from the stored readings; see ``OnlineFeatures.seed_states``. What stays open is a reading still
in another worker's writer queue at that moment (milliseconds): its asset's state is then left as
it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from prognos.errors import StorageUnavailableError
from prognos.ingestion.batching import Batcher
from prognos.ingestion.durability import seed_state
from prognos.ingestion.scoring import Scorer
from prognos.storage.writer import RecordWriter

__all__ = ["SEED_WAIT_SECONDS", "Swap", "swap_scorer"]

# How long a seed waits for the writer to bring the table up to date (spool replayed).
SEED_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Swap:
    """What a swap did: the scorer it replaced (still open: the caller closes it once nothing
    uses it), asset states seeded, journaled readings replayed, assets repaired after the swap."""

    previous: Scorer | None
    seeded: int | None
    replayed: int
    repaired: int


async def swap_scorer(
    scorer: Scorer,
    batcher: Batcher,
    writer: RecordWriter | None,
    *,
    current: Callable[[], Scorer | None],
    install: Callable[[Scorer], None],
) -> Swap:
    """Seed ``scorer`` and ``install`` it on the compute thread between two batches (see the
    module docstring). ``current()`` is the scorer served now. On failure ``scorer`` is closed,
    and the one served keeps serving; with a served scorer, a state that cannot be seeded now
    raises :class:`StorageUnavailableError` (the poller tries again)."""
    try:
        await batcher.run_in_compute_thread(batcher.start_journal)
        previous = current()
        try:
            seeded = await seed_state(scorer, writer, asyncio.to_thread, SEED_WAIT_SECONDS)
            if seeded is None and previous is not None:
                # Keep serving the model whose state is whole.
                raise StorageUnavailableError(
                    f"cannot rebuild the online state for {scorer.model.name}/"
                    f"{scorer.model.version}: the stored readings cannot be read now"
                )
        except BaseException:
            await batcher.run_in_compute_thread(batcher.stop_journal)
            raise

        def catch_up_and_swap() -> tuple[int, int]:
            counts = scorer.replay(batcher.stop_journal())
            install(scorer)  # between two batches
            return counts

        replayed, behind = await batcher.run_in_compute_thread(catch_up_and_swap)
    except BaseException:
        await asyncio.to_thread(scorer.close)
        raise
    repaired = 0
    if behind:
        # Another worker sharing the store advanced these assets on the new model while this
        # one journaled readings on the old: they are stored now, so rebuild the assets from the
        # table (between batches: the state is not thread-safe here).
        repaired = (
            await seed_state(scorer, writer, batcher.run_in_compute_thread, SEED_WAIT_SECONDS) or 0
        )
    return Swap(previous, seeded, replayed, repaired)
