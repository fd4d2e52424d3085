"""Two source trees of ``prognos serve`` under the same load at the same time: a fair A/B on a
shared machine.

On a machine other work shares, two back-to-back ``bench_http.py`` runs measure how much CPU the
others left each run more than the change (the server got 37-86% of a core in alternated runs on
2026-12-07). Here both servers run at once, each from its own source tree (``PYTHONPATH``, e.g. a
``git worktree`` of the commit before), with its own fresh SQLite log database and API key, and
one asyncio client drives both with the same profile (``--users`` connections each, each its own
asset replaying real readings, ``POST /predict`` with a 1-3 s think time or ``--closed``). Both
see the same background load, so their ratio means something even when the figures do not.

Then, unless ``--batch-calls 0``, ``POST /batch-predict`` of ``--batch-assets`` stored assets with
explanations, the two servers alternated call by call (one call at a time).

Reported per server: requests/s, client latency p50/p95/p99, errors, and CPU per request of the
server process (event loop, database writer, the compute thread's pipe and unpickling) and of its
children (the compute process: the model). The client is far cheaper than Locust (a few % of a
core), but it is not Locust: compare these figures with each other, not with ``bench_http.py``'s.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/bench_http_ab.py --home H --model FD001 --before /tmp/before/src \\
        --users 500 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from bench_http import (
    Processes,
    free_port,
    raise_open_files_limit,
    tool,
    wait_ready,
    write_readings,
)

SRC = Path(__file__).resolve().parents[1] / "src"
KEY_RATE_LIMIT = 1_000_000_000


class Target:
    """One server: its process tree, key, and what the client measured."""

    def __init__(self, name: str, url: str, key: str, pid: int) -> None:
        self.name, self.url, self.key, self.pid = name, url, key, pid
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.cpu: dict[int, float] = {}
        self.batch: list[float] = []
        self.batch_errors = 0

    def cpu_now(self) -> dict[int, float]:
        root = psutil.Process(self.pid)
        out = {}
        for p in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
        return out


async def user(target: Target, readings: dict[str, Any], stop: float, measure_from: float,
               think: tuple[float, float] | None) -> None:  # fmt: skip
    """One keep-alive connection replaying one asset's readings, then the next asset's."""
    host, port = target.url.removeprefix("http://").split(":")
    names, sensors = readings["settings"], readings["sensors"]
    trajectories = [t for t in readings["trajectories"] if len(t["times"]) > 1]
    if think is not None:
        await asyncio.sleep(random.uniform(*think))
    reader, writer = await asyncio.open_connection(host, int(port))
    trajectory, position, asset = random.choice(trajectories), 0, f"ab-{uuid.uuid4().hex[:12]}"
    time_field = "cycle" if readings["time_kind"] == "cycle" else "timestamp"
    try:
        while time.monotonic() < stop:
            values = trajectory["values"][position]
            body = json.dumps({
                "equipment_id": asset,
                time_field: trajectory["times"][position],
                "operational_settings": dict(zip(names, values[: len(names)], strict=True)),
                "sensor_readings": dict(zip(sensors, values[len(names) :], strict=True)),
            }).encode()  # fmt: skip
            head = (
                f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"X-API-Key: {target.key}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            start = time.perf_counter()
            writer.write(head.encode() + body)
            status_line, *headers = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = next(
                int(h.split(b":")[1]) for h in headers if h.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            elapsed = (time.perf_counter() - start) * 1000.0
            status = status_line.split(b" ")[1].decode()
            if status != "200":
                target.errors[status] = target.errors.get(status, 0) + 1
            elif time.monotonic() >= measure_from:
                target.latencies.append(elapsed)
            position += 1
            if position >= len(trajectory["times"]):
                trajectory, position = random.choice(trajectories), 0
                asset = f"ab-{uuid.uuid4().hex[:12]}"
            if think is not None:
                await asyncio.sleep(random.uniform(*think))
    finally:
        writer.close()


async def drive(targets: list[Target], readings: dict[str, Any], args: argparse.Namespace) -> float:
    think = None if args.closed else (1.0, 3.0)
    warm = 2.0 if args.closed else 5.0
    start = time.monotonic()
    measure_from, stop = start + warm, start + warm + args.duration
    tasks = [
        asyncio.create_task(user(t, readings, stop, measure_from, think))
        for _ in range(args.users)
        for t in targets
    ]
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    for t in targets:
        t.cpu = t.cpu_now()
    began = time.monotonic()
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    elapsed = time.monotonic() - began
    for t in targets:
        after = t.cpu_now()
        t.cpu = {pid: after[pid] - t.cpu.get(pid, 0.0) for pid in after}
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed


def batch_ab(targets: list[Target], readings: dict[str, Any], assets: int, calls: int) -> None:
    """Seed ``assets`` assets through ``POST /readings`` on each server, then alternate
    ``POST /batch-predict`` of all of them (with explanations); latencies per server."""
    import httpx

    names, sensors = readings["settings"], readings["sensors"]
    time_field = "cycle" if readings["time_kind"] == "cycle" else "timestamp"
    trajectories = readings["trajectories"]
    ids = [f"ab-batch-{k:04d}" for k in range(assets)]
    seed = []
    for k, asset in enumerate(ids):
        t = trajectories[k % len(trajectories)]
        for j in range(min(5, len(t["times"]))):
            values = t["values"][j]
            seed.append({
                "equipment_id": asset,
                time_field: t["times"][j],
                "operational_settings": dict(zip(names, values[: len(names)], strict=True)),
                "sensor_readings": dict(zip(sensors, values[len(names) :], strict=True)),
            })  # fmt: skip
    clients = [
        httpx.Client(base_url=t.url, headers={"X-API-Key": t.key}, timeout=120.0) for t in targets
    ]
    try:
        for client in clients:
            response = client.post("/readings", json={"readings": seed})
            response.raise_for_status()
        body = {"equipment_ids": ids, "explain": True}
        for call in range(calls + 2):  # the first two rounds warm up
            order = list(zip(targets, clients, strict=True))
            for target, client in order if call % 2 else reversed(order):
                start = time.perf_counter()
                response = client.post("/batch-predict", json=body)
                elapsed = (time.perf_counter() - start) * 1000.0
                if response.status_code != 200:
                    target.batch_errors += 1
                elif call >= 2:
                    target.batch.append(elapsed)
    finally:
        for client in clients:
            client.close()


def start_server(processes: Processes, name: str, source: Path, args: argparse.Namespace,
                 console: Console) -> Target:  # fmt: skip
    """``prognos serve`` from ``source`` with a fresh log database and key of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROGNOS_BENCH_")}
    env.update(PYTHONPATH=str(source), OMP_NUM_THREADS="1",
               PROGNOS_DATABASE_URL=f"sqlite:///{args.run_dir / f'{name}.db'}")  # fmt: skip
    created = subprocess.run(
        [tool("prognos"), "keys", "create", "--name", f"ab-{name}", "--scopes", "predict,ingest",
         "--rate-limit", str(KEY_RATE_LIMIT), "--home", str(args.home)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if created.returncode != 0:
        raise SystemExit(f"prognos keys create failed for {name}:\n{created.stderr}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    group = processes.start(
        f"{name} server",
        [tool("prognos"), "serve", "--model", args.model, "--port", str(port),
         "--home", str(args.home)],
        env, args.run_dir / f"{name}-serve.log", args.run_dir,
    )  # fmt: skip
    wait_ready(group, f"{url}/health", 300.0, console)
    return Target(name, url, created.stdout.strip(), group.proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="prognos home with the model")
    parser.add_argument("--model", required=True, help="registered model (its champion)")
    parser.add_argument("--before", type=Path, required=True, help="source tree A (its src/)")
    parser.add_argument("--after", type=Path, default=SRC, help="source tree B [this one]")
    parser.add_argument("--users", type=int, default=500, help="connections per server")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--closed", action="store_true", help="no think time")
    parser.add_argument("--batch-assets", type=int, default=100, help="assets per batch call")
    parser.add_argument("--batch-calls", type=int, default=30, help="timed batch calls each")
    parser.add_argument("--data", help="KIND:PATH readings to replay [the model's fleet]")
    parser.add_argument("--run-dir", type=Path, help="logs and databases [HOME/bench/ab-...]")
    args = parser.parse_args()
    args.home = args.home.resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.run_dir = (args.run_dir or args.home / "bench" / f"ab-{stamp}").resolve()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    console = Console()
    from prognos.config import get_settings

    readings = write_readings(args.run_dir / "readings.json", get_settings(home=args.home),
                              args.model, args.data)  # fmt: skip
    processes = Processes()
    try:
        targets = [
            start_server(processes, name, source.resolve(), args, console)
            for name, source in (("before", args.before), ("after", args.after))
        ]
        load = os.getloadavg()[0]
        elapsed = asyncio.run(drive(targets, readings, args))
        if args.batch_calls > 0:
            batch_ab(targets, readings, args.batch_assets, args.batch_calls)
    finally:
        processes.stop_all()
    profile = "closed loop" if args.closed else "1-3 s think time"
    console.print(f"{args.users} connections per server, {profile}, {elapsed:.0f} s, load "
                  f"average {load:.1f} -> {os.getloadavg()[0]:.1f}", highlight=False)  # fmt: skip
    for t in targets:
        lat = sorted(t.latencies)
        n = len(lat)
        if not n:
            console.print(f"{t.name}: no successful request; errors {t.errors}")
            continue
        main_cpu = t.cpu.get(t.pid, 0.0)
        children = sum(v for pid, v in t.cpu.items() if pid != t.pid)
        console.print(
            f"{t.name}: {n / elapsed:.1f} req/s, p50 {lat[n // 2]:.1f} ms, p95 "
            f"{lat[int(n * 0.95)]:.1f} ms, p99 {lat[int(n * 0.99)]:.1f} ms, errors {t.errors}; "
            f"CPU per request: server process {main_cpu / n * 1000:.2f} ms, "
            f"compute process {children / n * 1000:.2f} ms",
            highlight=False,
        )
    for t in targets:
        if t.batch:
            b = sorted(t.batch)
            console.print(
                f"{t.name}: POST /batch-predict {args.batch_assets} assets with explanations, "
                f"{len(b)} calls: p50 {b[len(b) // 2]:.1f} ms, p95 {b[int(len(b) * 0.95)]:.1f} ms"
                + (f", {t.batch_errors} failed" if t.batch_errors else ""),
                highlight=False,
            )


if __name__ == "__main__":
    main()
