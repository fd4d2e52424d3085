"""The model and its online state in a process of their own (``PROGNOS_COMPUTE_PROCESS``, on by
default for ``prognos serve``).

Why: in one process the HTTP event loop, the database writer and the model share one GIL. Under
load a compute batch then waits for the GIL about as long as it runs (measured: 9.1 ms for a
batch that takes 5.2 ms alone), and requests queue behind it. Here the server process keeps HTTP,
authentication and the writer; the compute process keeps the model, the state and the TreeSHAP
side thread, and each has a GIL of its own. A batch crosses a pipe as one pickled message each
way (a lone request pays about 0.4 ms for it; under load it is paid once per batch).

One compute process serves one model version. A new champion gets a new process, loaded and
seeded while the old one still serves; the batcher then replays the readings accepted meanwhile
and switches between two batches (see ``Runtime.install``). If the process dies or stops
answering, the batch in flight fails with 503 and the runtime starts a new one at once.

Written on ``multiprocessing`` pipes rather than a broker or an RPC library because the two ends
are one parent and one child on the same host, calls are strictly one at a time, and the payloads
are Python objects the two sides already share.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from prognos.config import Settings
from prognos.ingestion.scoring import BatchResult, ComputeLostError, LocalScorer, ServedModel, Work

log = logging.getLogger("prognos.serving")

# Loading a model (imports, unpickling, the registry) and seeding its state can take a while.
START_TIMEOUT_S = 300.0
# A batch that takes longer than this means the process is stuck: it is replaced.
CALL_TIMEOUT_S = 60.0
# Imported once by the fork server, so that each compute process starts from them instead of
# importing torch, XGBoost and MLflow again (seconds per process otherwise).
PRELOAD = ["prognos.ingestion.compute", "prognos.ingestion.loading", "torch", "xgboost", "mlflow"]


def _context() -> multiprocessing.context.ForkServerContext:
    """``forkserver``: children fork from a clean single-threaded server process (never from
    this one, where torch, uvicorn and the writer run threads), with the heavy modules already
    imported."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class ProcessScorer:
    """A :class:`LocalScorer` in a child process; the calls of :class:`Scorer`, over a pipe.

    Calls are made one at a time: the batcher's compute thread makes them while this scorer
    serves, the runtime's install before (``seed``) or between batches (``replay``).
    """

    def __init__(self, settings: Settings, name: str, version: str) -> None:
        context = _context()
        self._conn, child = context.Pipe(duplex=True)
        self._process = context.Process(
            target=child_main,
            args=(child, settings, name, version),
            name=f"prognos-compute-{name}-{version}",
            daemon=True,
        )
        self._lock = threading.Lock()
        self._lost = False
        self._ready = False  # the child's LocalScorer.ready, as its last answer said
        self._process.start()
        child.close()
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise ComputeLostError("it did not start in time")
            status, payload = self._receive()
        except (EOFError, OSError, ComputeLostError) as exc:
            self.close()
            raise ComputeLostError(
                f"compute process for {name}/{version} failed to start "
                f"(exit code {self._process.exitcode}): {exc or type(exc).__name__}"
            ) from exc
        if status != "ready":
            self.close()
            raise ComputeLostError(f"compute process for {name}/{version} failed: {payload}")
        self.model: ServedModel = payload
        self.mode = "process"
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    @property
    def alive(self) -> bool:
        return not self._lost and self._process.is_alive()

    @property
    def ready(self) -> bool:
        return self._ready

    def process(self, work: Sequence[Work]) -> BatchResult:
        result: BatchResult = self._call("process", work)
        self._ready = result.ready
        return result

    def seed(self) -> int:
        self._ready = False
        seeded: int = self._call("seed", None, timeout=START_TIMEOUT_S)
        self._ready = True
        return seeded

    def resume(self) -> bool:
        self._ready = bool(self._call("resume", None))
        return self._ready

    def replay(self, readings: Sequence[Any]) -> tuple[int, int]:
        counts: tuple[int, int] = self._call("replay", list(readings), timeout=START_TIMEOUT_S)
        return counts

    def close(self) -> None:
        """Stop the process (it also stops by itself when this end of the pipe closes)."""
        with self._lock:
            self._lost = True
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(("stop", None))
            self._conn.close()
        self._process.join(10.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)

    def _call(self, op: str, arg: Any, timeout: float | None = None) -> Any:
        timeout = CALL_TIMEOUT_S if timeout is None else timeout
        with self._lock:
            if self._lost:
                raise ComputeLostError("the compute process has stopped; a new one is starting")
            try:
                self._conn.send((op, arg))
                if not self._conn.poll(timeout):
                    self._process.kill()
                    raise TimeoutError(f"no answer to {op!r} in {timeout:g} s; killed it")
                status, payload = self._receive()
            except (EOFError, OSError) as exc:  # TimeoutError is an OSError
                self._lost = True
                raise ComputeLostError(
                    f"the compute process stopped ({exc or 'its pipe closed'}); "
                    "a new one is starting"
                ) from exc
        if status == "error":
            raise payload
        return payload

    def _receive(self) -> tuple[str, Any]:
        message: tuple[str, Any] = self._conn.recv()
        return message


def child_main(conn: Connection, settings: Settings, name: str, version: str) -> None:
    """The compute process: load the model, then answer calls until told to stop."""
    # Ctrl-C reaches the whole process group; this process stops when the server closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s compute %(levelname)s %(message)s"
    )
    try:
        from prognos.ingestion.loading import build_predictor, load_model, served_fleet, settle_heap
        from prognos.storage.database import Database, database_url

        predictor = build_predictor(settings, load_model(settings, name, version))
        side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prognos-explain")
        db = Database(database_url(settings))  # to seed state from the stored readings
        scorer = LocalScorer(predictor, side=side, db=db, fleet=served_fleet(settings, predictor))
        settle_heap()
        conn.send(("ready", scorer.model))
    except BaseException as exc:  # say why to the parent, which reports it in /health
        conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))
        return
    log.info("compute process %d serving %s/%s", os.getpid(), name, version)
    try:
        _serve(conn, scorer)
    finally:
        side.shutdown(wait=False)
        db.dispose()


def _serve(conn: Connection, scorer: LocalScorer) -> None:
    handlers = {
        "process": scorer.process,
        "seed": lambda _: scorer.seed(),
        "resume": lambda _: scorer.resume(),
        "replay": scorer.replay,
    }
    while True:
        try:
            op, arg = conn.recv()
        except (EOFError, OSError):
            return  # the server process is gone
        if op == "stop":
            return
        try:
            reply: tuple[str, Any] = ("ok", handlers[op](arg))
        except Exception as exc:  # a bug in a batch fails that batch, not the process
            log.exception("compute call %s failed", op)
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an exception that does not pickle: send its text
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
