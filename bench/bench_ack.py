"""What "acknowledged means durable" costs: the wait for a request's records to settle.

The service answers ``POST /predict`` only once its reading and prediction are committed (or
fsynced in the spool). This times exactly that wait on :class:`RecordWriter`, without HTTP or a
model: ``--clients`` threads each submit one reading and one prediction, take a ticket and wait
for it to settle, ``--requests`` times in all, against

- SQLite (a fresh file, WAL, ``synchronous=NORMAL``, as the embedded default);
- the spool alone (the database unreachable: append + fsync);
- PostgreSQL when ``--postgres URL`` is given (a throwaway database is created and dropped).

Printed: p50/p95/p99 of the wait per request, requests per second, and records per commit (the
group commit at work: with more clients, one commit serves more requests)::

    .venv/bin/python bench/bench_ack.py --clients 1,16,64
    .venv/bin/python bench/bench_ack.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from prognos.storage.database import Database
from prognos.storage.writer import RecordWriter


class _Down(Database):
    """A database that is never reachable: every batch goes to the spool."""

    def ping(self) -> bool:
        return False


def _row(kind: str, asset: str, t: int) -> dict[str, object]:
    now = datetime.now(UTC)
    if kind == "reading":
        values = {f"sensor_{i}": 500.0 + i for i in range(21)}
        return {"asset_id": asset, "time": t, "values": values, "received_at": now}
    return {
        "id": f"pred_{uuid.uuid4().hex}", "asset_id": asset, "time": t, "created_at": now,
        "model_name": "bench", "model_version": "1", "failure_probability": 0.1,
        "risk_level": "LOW", "rul": 80.0, "rul_lower": 60.0, "rul_upper": 100.0,
        "should_inspect": False, "explanation": None, "latency_ms": 1.0,
    }  # fmt: skip


def measure(writer: RecordWriter, clients: int, requests: int) -> dict[str, float]:
    """Per-request settle waits with ``clients`` concurrent submitters."""
    waits: list[float] = []
    lock = threading.Lock()
    each = max(1, requests // clients)

    def client(c: int) -> None:
        mine = []
        for t in range(each):
            start = time.perf_counter()
            writer.submit("reading", _row("reading", f"bench-{c}", t), normalised=False)
            writer.submit("prediction", _row("prediction", f"bench-{c}", t), normalised=False)
            done = threading.Event()
            if writer.when_settled(writer.ticket(), done.set):
                done.wait(30)
            mine.append(time.perf_counter() - start)
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.array(waits) * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "rps": len(waits) / elapsed,
    }


@contextmanager
def _postgres(url: str) -> Iterator[str]:
    server = sa.make_url(url).set(drivername="postgresql+psycopg")
    name = f"prognos_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,16,64", help="comma-separated concurrency")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a throwaway db is made)")
    args = parser.parse_args()
    table = Table(title="wait for a request's 2 records to settle (ms)")
    for column in ("target", "clients", "p50", "p95", "p99", "requests/s"):
        table.add_column(column, justify="right" if column != "target" else "left")
    with tempfile.TemporaryDirectory() as tmp, contextlib_postgres(args.postgres) as pg_url:
        targets = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        if pg_url is not None:
            targets["postgresql"] = pg_url
        targets["spool only"] = f"sqlite:///{Path(tmp) / 'down.db'}"
        for target, url in targets.items():
            db = _Down(url) if target == "spool only" else Database(url)
            if target != "spool only":
                db.upgrade()
            with RecordWriter(db, Path(tmp) / f"spool-{target}") as writer:
                measure(writer, 4, 200)  # warm-up: connections, statements, the spool file
                for clients in (int(c) for c in args.clients.split(",")):
                    got = measure(writer, clients, args.requests)
                    cells = [f"{got[k]:.2f}" for k in ("p50", "p95", "p99")]
                    table.add_row(target, str(clients), *cells, f"{got['rps']:.0f}")
            db.dispose()
    Console().print(table)


@contextmanager
def contextlib_postgres(url: str | None) -> Iterator[str | None]:
    if url is None:
        yield None
        return
    with _postgres(url) as made:
        yield made


if __name__ == "__main__":
    main()
