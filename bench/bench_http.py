"""HTTP benchmark of ``prognos serve`` against ``mlflow models serve`` of the same model.

Steps (everything on 127.0.0.1; each server and Locust run is its own process group, killed at
the end whatever happens):

1. Write the readings to replay (``readings.json``: trajectories of the model's fleet, the same
   ones ``bench_serving_core.py`` uses) and create an API key with a very high rate limit, so
   that 429s do not hide latency (they are still counted apart). The key is revoked at the end.
2. Start ``prognos serve --model NAME --workers W`` on a free port; wait for ``/health`` 200.
3. For each ``--users`` count, Locust headless (``bench/locustfile.py``, ``PrognosUser``): each
   user owns an asset and POSTs ``/predict`` every 1-3 s with its next reading (5% of requests
   are ``GET /assets/{id}`` and ``/health``). Users are spawned at ``--spawn-rate`` and the
   statistics reset once all are running, so the figures cover ``--duration`` seconds at full
   load.
4. Closed loop, the maximum throughput: Locust with ``--max-connections`` users (10) and no
   think time, ``/predict`` only, for ``--max-duration`` seconds.
5. ``POST /batch-predict`` of ``--batch-assets`` stored assets (seeded with a few readings each
   through ``POST /readings``) with explanations, ``--batch-calls`` times, one at a time (httpx):
   p50/p95 on the client.
6. Unless ``--skip-peer``: our server is stopped, then ``mlflow models serve -m
   models:/NAME@champion --env-manager local --workers W`` (the home's MLflow store) is measured
   the same way (``PeerUser``: each request carries the asset's last ``--history`` readings, as a
   client of a stateless model server must send them).

Between runs the runner waits until the server's CPU use falls (a saturated server still works
off its queue after Locust stops) so that one run's backlog does not land on the next.

Figures: Locust's ``*_stats.csv`` (the Aggregated row: every request of the run; the JSON output
also has each endpoint) and ``*_failures.csv`` (counted by HTTP status, 429 apart). Locust
rewrites these files every second, so they can miss the run's last second; it rounds response
times above 100 ms to two significant digits. "server CPU" is the CPU time of the server's
processes over the run, in % of one core. On a small machine Locust competes with the server for
CPU: the runner flags runs where Locust reported its CPU above 90% (figures then understate the
server). Both servers run their native pools on one thread (``OMP_NUM_THREADS=1``; change the
peer's with ``--peer-threads``).

Run after ``prognos demo --home H`` (model ``demo``) or ``prognos train`` (model ``FD001``)::

    .venv/bin/python bench/bench_http.py --home H --model demo --users 100,500,1000 \\
        --duration 60 --output bench-http.json

Smoke: ``--users 20 --duration 5 --skip-peer``. Everything a run writes (readings, Locust CSVs
and logs, server logs, the service's log database) is under ``--run-dir`` (default
``H/bench/http-<time>``); ``--home-database`` logs to the home's database instead.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.markup import escape
from rich.table import Table

BENCH = Path(__file__).resolve().parent
LOCUSTFILE = BENCH / "locustfile.py"
KEY_RATE_LIMIT = 1_000_000_000  # requests per minute: never reached (fits a 32-bit column)
IDLE_CPU_PERCENT = 15.0  # a server below this (% of one core) has worked off its queue


def tool(name: str) -> str:
    """An executable of this virtual environment (next to the interpreter), else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found next to {sys.executable} or on PATH")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ------------------------------------------------------------------------------------ processes


class Group:
    """A subprocess in its own process group (servers spawn workers), killed as a whole."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path):
        self.name = name
        self.log_path = log
        self._log: IO[str] = log.open("w")
        self._log.write("$ " + " ".join(cmd) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Workers left behind by a parent that died first are still in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()


class Processes:
    """Every group started, stopped in ``finally`` (and on SIGTERM)."""

    def __init__(self) -> None:
        self.groups: list[Group] = []

    def start(self, *args: Any, **kwargs: Any) -> Group:
        group = Group(*args, **kwargs)
        self.groups.append(group)
        return group

    def stop_all(self) -> None:
        for group in reversed(self.groups):
            with contextlib.suppress(Exception):
                group.stop()


def wait_ready(group: Group, url: str, timeout: float, console: Console) -> None:
    """Poll ``url`` until 200; fail with the server's log when it exits or takes too long."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with console.status(f"Waiting for {group.name} at {url}"):
        while time.monotonic() < deadline:
            if not group.alive():
                raise SystemExit(
                    f"{group.name} exited ({group.proc.returncode}) before it was ready; "
                    f"log {group.log_path}:\n{group.tail()}"
                )
            try:
                response = httpx.get(url, timeout=5.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            time.sleep(0.5)
    raise SystemExit(
        f"{group.name} not ready after {timeout:.0f} s ({last}); log {group.log_path}:\n"
        f"{group.tail()}"
    )


def wait_idle(server: Group, timeout: float) -> float:
    """Seconds until the server's CPU use is below ``IDLE_CPU_PERCENT`` (or ``timeout``)."""
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout and server.alive():
        before, t0 = server.cpu_seconds(), time.monotonic()
        time.sleep(0.5)
        busy = 100.0 * (server.cpu_seconds() - before) / (time.monotonic() - t0)
        quiet = quiet + 1 if busy < IDLE_CPU_PERCENT else 0
        if quiet >= 2:
            break
    return time.monotonic() - start


# ------------------------------------------------------------------------------------- readings


def write_readings(path: Path, settings: Any, model: str, data: str | None) -> dict[str, Any]:
    """The readings file the Locust users replay; returns a summary.

    Format: ``{"model", "version", "fleet", "source", "time_kind": "cycle"|"timestamp",
    "settings": [names], "sensors": [names], "integer_assets": bool, "window": int,
    "trajectories": [{"asset", "times": [...], "values": [[settings..., sensors...], ...]}]}``,
    each trajectory one asset's readings in time order.
    """
    import pandas as pd

    if str(BENCH) not in sys.path:  # bench/ is not a package: its scripts import each other
        sys.path.insert(0, str(BENCH))
    from bench_serving_core import bench_readings
    from prognos.fleet import ASSET, TIME
    from prognos.ingestion.loading import load_champion

    loaded = load_champion(settings, model)
    fleet = loaded.bundle.fleet
    frame, source, dropped = bench_readings(fleet, data)
    channels = [*fleet.setting_names, *fleet.sensor_names]
    trajectories = []
    for asset, group in frame.groupby(ASSET, sort=False):
        times = group[TIME]
        if fleet.time_kind == "cycle":
            time_values: list[Any] = [int(t) for t in times]
        else:
            stamps = pd.to_datetime(times, utc=True)
            time_values = [t.isoformat().replace("+00:00", "Z") for t in stamps]
        trajectories.append(
            {
                "asset": str(asset),
                "times": time_values,
                "values": group[channels].to_numpy(dtype=np.float64).tolist(),
            }
        )
    document = {
        "model": loaded.name,
        "version": loaded.version,
        "fleet": fleet.name,
        "source": source,
        "time_kind": fleet.time_kind,
        "settings": fleet.setting_names,
        "sensors": fleet.sensor_names,
        "integer_assets": bool(pd.api.types.is_integer_dtype(frame[ASSET])),
        "window": loaded.bundle.window,
        "trajectories": trajectories,
    }
    path.write_text(json.dumps(document))
    lengths = [len(t["times"]) for t in trajectories]
    return {
        "model": loaded.name,
        "version": loaded.version,
        "fleet": fleet.name,
        "source": source,
        "dropped_rows": dropped,
        "assets": len(trajectories),
        "readings": int(sum(lengths)),
        "lengths": lengths,
        "trajectories": trajectories,
        "time_kind": fleet.time_kind,
        "settings": fleet.setting_names,
        "sensors": fleet.sensor_names,
    }


# --------------------------------------------------------------------------------------- locust


@dataclass
class Result:
    target: str
    mode: str  # "open" (users with 1-3 s think time) or "closed" (no think time)
    users: int
    seconds: float  # measured window (after the ramp-up)
    requests: int
    failures: int
    rps: float
    ok_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    failure_messages: dict[str, int] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    server_cpu_percent: float = 0.0
    client_cpu_percent: float = 0.0
    client_cpu_bound: bool = False
    drain_seconds: float = 0.0
    csv_prefix: str = ""
    # POST /predict latency inside the service (its Prometheus histogram over the measured
    # window): the smallest bucket bound holding 50/95/99% of the requests. Prognos only.
    server_side: dict[str, float | None] = field(default_factory=dict)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def failure_kind(message: str) -> str:
    """``HTTP 429`` -> ``"429"``; ``connection error: X`` -> ``"connection"``; else as is."""
    match = re.search(r"HTTP (\d{3})", message)
    if match:
        return match.group(1)
    if "connection error" in message:
        return "connection"
    if "bad response" in message:
        return "bad response"
    return "other"


def parse_locust(prefix: Path) -> dict[str, Any]:
    stats_path = Path(f"{prefix}_stats.csv")
    rows = list(csv.DictReader(stats_path.open()))
    endpoints = []
    aggregated: dict[str, str] | None = None
    for row in rows:
        entry = {
            "method": row["Type"],
            "name": row["Name"],
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "rps": _number(row["Requests/s"]) or 0.0,
            "p50_ms": _number(row["50%"]),
            "p95_ms": _number(row["95%"]),
            "p99_ms": _number(row["99%"]),
            "mean_ms": _number(row["Average Response Time"]),
            "max_ms": _number(row["Max Response Time"]),
        }
        if row["Name"] == "Aggregated":
            aggregated = row
        else:
            endpoints.append(entry)
    if aggregated is None:
        raise RuntimeError(f"{stats_path} has no Aggregated row")
    by_kind: dict[str, int] = {}
    messages: dict[str, int] = {}
    failures_path = Path(f"{prefix}_failures.csv")
    if failures_path.exists():
        for row in csv.DictReader(failures_path.open()):
            count = int(row["Occurrences"])
            kind = failure_kind(row["Error"])
            by_kind[kind] = by_kind.get(kind, 0) + count
            key = f"{row['Method']} {row['Name']}: {row['Error']}"
            messages[key] = messages.get(key, 0) + count
    return {
        "aggregated": aggregated,
        "endpoints": endpoints,
        "by_kind": by_kind,
        "messages": messages,
    }


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_locust(
    processes: Processes,
    server: Group,
    *,
    target: str,
    url: str,
    users: int,
    duration: int,
    closed: bool,
    args: argparse.Namespace,
    env: dict[str, str],
    console: Console,
) -> Result:
    mode = "closed" if closed else "open"
    label = f"{target}-{mode}-{users}u"
    prefix = args.run_dir / label
    rate = args.spawn_rate or min(100.0, max(1.0, users / 5.0))
    if closed:
        rate = float(users)
    ramp = math.ceil(users / rate)
    run_time = duration + ramp + 2  # statistics are reset when the last user is spawned
    cmd = [
        tool("locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--reset-stats",
        "-u",
        str(users),
        "-r",
        f"{rate:g}",
        "-t",
        f"{run_time}s",
        "--host",
        url,
        "--csv",
        str(prefix),
        "--loglevel",
        "INFO",
    ]
    if args.locust_processes > 1:
        cmd += ["--processes", str(args.locust_processes)]
    locust_env = {
        **env,
        "PROGNOS_BENCH_TARGET": target,
        "PROGNOS_BENCH_CLOSED_LOOP": "1" if closed else "0",
    }
    server_before = server.cpu_seconds()
    client_before = children_cpu_seconds()
    started = time.monotonic()
    # The service's own latency histogram, read when Locust resets its statistics (all users
    # spawned) and at the end: how much of the client's latency is spent inside the handler.
    histograms: list[dict[float, float] | None] = []
    if target == "prognos":
        timer = threading.Timer(ramp, lambda: histograms.append(predict_histogram(url)))
        timer.start()
    what = f"{target}: {users} users, {'no think time' if closed else '1-3 s think time'}"
    with console.status(f"Locust {what}, {run_time} s (ramp {ramp} s)"):
        group = processes.start(
            f"locust {label}", cmd, locust_env, args.run_dir / f"{label}.log", args.run_dir
        )
        try:
            group.proc.wait(run_time + 120)
        except subprocess.TimeoutExpired:
            console.print(f"[red]Locust {label} did not stop in time; killed[/]")
        finally:
            server_cpu = server.cpu_seconds() - server_before
            group.stop()
    elapsed = time.monotonic() - started
    client_cpu = children_cpu_seconds() - client_before
    server_side: dict[str, float | None] = {}
    if target == "prognos":
        timer.cancel()
        timer.join()
        if histograms and histograms[0] is not None:
            after = predict_histogram(url)
            if after is not None:
                server_side = {
                    f"p{round(q * 100)}_at_most_ms": bucket_quantile(histograms[0], after, q)
                    for q in (0.5, 0.95, 0.99)
                }
    if not Path(f"{prefix}_stats.csv").exists():
        raise SystemExit(f"Locust wrote no statistics; log {group.log_path}:\n{group.tail()}")
    parsed = parse_locust(prefix)
    agg = parsed["aggregated"]
    requests, failures = int(agg["Request Count"]), int(agg["Failure Count"])
    rps = _number(agg["Requests/s"]) or 0.0
    log_text = group.log_path.read_text(errors="replace")
    with console.status(f"Waiting for {server.name} to work off its queue"):
        drain = wait_idle(server, args.drain_timeout)
    result = Result(
        target=target,
        mode=mode,
        users=users,
        seconds=requests / rps if rps else 0.0,
        requests=requests,
        failures=failures,
        rps=rps,
        ok_rps=rps * (requests - failures) / requests if requests else 0.0,
        p50_ms=_number(agg["50%"]),
        p95_ms=_number(agg["95%"]),
        p99_ms=_number(agg["99%"]),
        mean_ms=_number(agg["Average Response Time"]),
        failures_by_kind=parsed["by_kind"],
        failure_messages=parsed["messages"],
        endpoints=parsed["endpoints"],
        server_cpu_percent=100.0 * server_cpu / elapsed,
        client_cpu_percent=100.0 * client_cpu / elapsed,
        client_cpu_bound="CPU usage" in log_text,  # Locust warns above 90%
        drain_seconds=drain,
        csv_prefix=str(prefix),
        server_side=server_side,
    )
    inside = ""
    if server_side.get("p95_at_most_ms") is not None:
        inside = (
            f" (in the handler: p50 <= {server_side['p50_at_most_ms']:g} ms, "
            f"p95 <= {server_side['p95_at_most_ms']:g} ms)"
        )
    console.print(
        f"  {label}: {result.rps:,.1f} req/s, p50 {result.p50_ms} ms, p95 {result.p95_ms} ms"
        f"{inside}, p99 {result.p99_ms} ms, {failures} failures {result.failures_by_kind or ''}"
        + (f", server busy {drain:.0f} s after" if drain >= args.drain_timeout else ""),
        soft_wrap=True,
        highlight=False,
    )
    return result


def predict_histogram(url: str) -> dict[float, float] | None:
    """Cumulative counts of ``prognos_api_latency_seconds`` for /predict, by bucket bound (s)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return None
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("prognos_api_latency_seconds_bucket{") and (
            'endpoint="/predict"' in line
        ):
            match = re.search(r'le="([^"]+)"', line)
            if match:
                buckets[float(match.group(1))] = float(line.rsplit(" ", 1)[1])
    return buckets or None


def bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """The smallest bucket bound (ms) under which at least ``q`` of the requests in between fell."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    if total <= 0:
        return None
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= q * total:
            return bound * 1000.0
    return None


# ---------------------------------------------------------------------------------------- batch


def batch_bench(
    url: str, key: str, readings: dict[str, Any], args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    """Seed ``--batch-assets`` assets through POST /readings, then time POST /batch-predict."""
    headers = {"X-API-Key": key}
    trajectories = readings["trajectories"]
    time_field = "cycle" if readings["time_kind"] == "cycle" else "timestamp"
    n_settings = len(readings["settings"])
    stamp = datetime.now().strftime("%H%M%S")
    ids = [f"batch-{stamp}-{k:04d}" for k in range(args.batch_assets)]
    seed = []
    for k, asset in enumerate(ids):
        t = trajectories[k % len(trajectories)]
        for j in range(min(args.batch_seed_readings, len(t["times"]))):
            values = t["values"][j]
            seed.append(
                {
                    "equipment_id": asset,
                    time_field: t["times"][j],
                    "operational_settings": dict(
                        zip(readings["settings"], values[:n_settings], strict=True)
                    ),
                    "sensor_readings": dict(
                        zip(readings["sensors"], values[n_settings:], strict=True)
                    ),
                }
            )
    out: dict[str, Any] = {"assets": len(ids), "calls": args.batch_calls, "explain": True}
    with httpx.Client(base_url=url, headers=headers, timeout=120.0) as client:
        response = client.post("/readings", json={"readings": seed})
        if response.status_code != 200 or response.json().get("accepted") != len(seed):
            raise SystemExit(
                f"seeding {len(ids)} assets through POST /readings failed: HTTP "
                f"{response.status_code} {response.text[:500]}"
            )
        body = {"equipment_ids": ids, "explain": True}
        latencies: list[float] = []
        server_ms: list[float] = []
        failures: dict[str, int] = {}
        with console.status(f"POST /batch-predict x {args.batch_calls} ({len(ids)} assets)"):
            for call in range(args.batch_calls + 3):  # the first 3 warm up
                start = time.perf_counter()
                response = client.post("/batch-predict", json=body)
                elapsed = time.perf_counter() - start
                problem = None
                if response.status_code != 200:
                    problem = f"HTTP {response.status_code}"
                else:
                    answer = response.json()
                    predictions = answer.get("predictions", [])
                    if answer.get("errors") or len(predictions) != len(ids):
                        problem = (
                            f"bad response: {len(predictions)} predictions, errors "
                            + str(answer.get("errors"))[:300]
                        )
                    elif any(p.get("explanation") is None for p in predictions):
                        problem = "bad response: a prediction without explanation"
                    else:
                        server_ms.append(float(answer["processing_time_ms"]))
                if problem is not None:
                    failures[problem] = failures.get(problem, 0) + 1
                    if failures[problem] == 1:
                        console.print(
                            f"[red]/batch-predict: {escape(problem)}[/]: "
                            f"{escape(response.text[:500])}"
                        )
                if call >= 3:
                    latencies.append(elapsed * 1000.0)
    ms = np.asarray(latencies)
    out.update(
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        mean_ms=float(ms.mean()),
        server_p50_ms=float(np.percentile(server_ms, 50)) if server_ms else None,
        failures=failures,
    )
    return out


# ----------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="prognos home with the model")
    parser.add_argument("--model", required=True, help="registered model; its champion is served")
    parser.add_argument("--users", default="100,500,1000", help="comma-separated user counts")
    parser.add_argument("--duration", type=int, default=60, help="seconds per user count")
    parser.add_argument("--workers", type=int, default=1, help="server processes (both)")
    parser.add_argument("--skip-peer", action="store_true", help="no mlflow models serve")
    parser.add_argument("--output", type=Path, help="write every figure to this JSON file")
    parser.add_argument(
        "--max-connections", type=int, default=10, help="users of the closed-loop run"
    )
    parser.add_argument(
        "--max-duration", type=int, help="seconds of the closed-loop run [min(20, --duration)]"
    )
    parser.add_argument("--batch-assets", type=int, default=100, help="assets per /batch-predict")
    parser.add_argument("--batch-calls", type=int, default=50, help="timed /batch-predict calls")
    parser.add_argument("--batch-seed-readings", type=int, default=5, help="readings per asset")
    parser.add_argument("--history", type=int, default=50, help="readings per peer request")
    parser.add_argument("--spawn-rate", type=float, help="users started per second [users/5]")
    parser.add_argument("--locust-processes", type=int, default=1, help="Locust --processes")
    parser.add_argument(
        "--peer-threads", type=int, default=1, help="peer's OMP_NUM_THREADS (0: leave unset)"
    )
    parser.add_argument("--data", help="KIND:PATH readings to replay [the model's fleet]")
    parser.add_argument("--run-dir", type=Path, help="where logs and CSVs go [HOME/bench/...]")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="server start, s")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="idle wait, s")
    parser.add_argument(
        "--home-database",
        action="store_true",
        help="log to the home's database (default: a fresh SQLite file in the run directory, "
        "unless PROGNOS_DATABASE_URL is set)",
    )
    args = parser.parse_args()
    try:
        args.user_counts = [int(u) for u in args.users.split(",") if u.strip()]
    except ValueError:
        parser.error(f"--users takes comma-separated integers, not {args.users!r}")
    if not args.user_counts or min(args.user_counts) < 1:
        parser.error("--users needs at least one positive count")
    if args.max_duration is None:
        args.max_duration = min(20, args.duration)
    if args.workers > 1 and not os.environ.get("PROGNOS_REDIS_URL"):
        parser.error("--workers > 1: prognos serve needs PROGNOS_REDIS_URL (shared state)")
    args.home = args.home.resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.run_dir = (args.run_dir or args.home / "bench" / f"http-{stamp}").resolve()
    return args


def create_key(args: argparse.Namespace, name: str) -> str:
    done = subprocess.run(
        [tool("prognos"), "keys", "create", "--name", name, "--scopes", "read,predict,ingest",
         "--rate-limit", str(KEY_RATE_LIMIT), "--home", str(args.home)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    key = done.stdout.strip()
    if done.returncode != 0 or not key:
        raise SystemExit(f"prognos keys create failed ({done.returncode}):\n{done.stderr}")
    return key


def revoke_key(args: argparse.Namespace, name: str) -> None:
    subprocess.run(
        [tool("prognos"), "keys", "revoke", name, "--home", str(args.home)],
        capture_output=True, check=False,
    )  # fmt: skip


def measure_target(
    processes: Processes,
    server: Group,
    *,
    target: str,
    url: str,
    args: argparse.Namespace,
    env: dict[str, str],
    console: Console,
    results: list[Result],
) -> None:
    """Every user count, then the closed loop; results are appended as they come."""
    for users in args.user_counts:
        results.append(
            run_locust(processes, server, target=target, url=url, users=users,
                       duration=args.duration, closed=False, args=args, env=env,
                       console=console)
        )  # fmt: skip
    results.append(
        run_locust(processes, server, target=target, url=url, users=args.max_connections,
                   duration=args.max_duration, closed=True, args=args, env=env, console=console)
    )  # fmt: skip


# Exceptions a server logs when Locust stops mid-request (the client went away): not errors.
DISCONNECTS = ("ClientDisconnect", "CancelledError", "ConnectionResetError", "BrokenPipeError")


def tracebacks(group: Group) -> dict[str, int]:
    """Exceptions in a server's log (their last line -> count), client disconnects left out."""
    found: dict[str, int] = {}
    blocks = group.log_path.read_text(errors="replace").split("Traceback (most recent call last)")
    for block in blocks[1:]:
        lines = block.splitlines()[1:]
        error = next((line for line in lines if line and not line[0].isspace()), "?")
        if not any(name in error for name in DISCONNECTS):
            found[error[:300]] = found.get(error[:300], 0) + 1
    return found


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM (e.g. ``timeout``) unwinds through ``finally`` like Ctrl-C does."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_open_files_limit(wanted: int = 65_536) -> None:
    """Each user holds a connection (and the server its end): lift the soft limit on open files
    as far as the hard limit allows; the servers and Locust inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main() -> None:
    args = parse_args()
    raise_open_files_limit()
    console = Console()
    if console.width < 120:  # not a terminal (80 columns), or a narrow one: keep cells whole
        console = Console(width=120)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # only this process's model load
    from prognos.config import get_settings

    args.run_dir.mkdir(parents=True, exist_ok=True)
    if not args.home_database and not os.environ.get("PROGNOS_DATABASE_URL"):
        # A fresh log database per run: figures must not depend on how many runs came before.
        os.environ["PROGNOS_DATABASE_URL"] = f"sqlite:///{args.run_dir / 'service.db'}"
    settings = get_settings(home=args.home)
    console.print(f"run directory (logs, Locust CSVs): {args.run_dir}", soft_wrap=True)
    readings_path = args.run_dir / "readings.json"
    with console.status(f"Loading {args.model}@champion and writing the readings"):
        readings = write_readings(readings_path, settings, args.model, args.data)
    usable = sum(n > args.history for n in readings["lengths"])
    console.print(
        f"model {readings['model']} version {readings['version']} (fleet {readings['fleet']}): "
        f"{readings['readings']:,} readings of {readings['assets']} assets from "
        f"{readings['source']}, {usable} trajectories longer than {args.history} readings",
        soft_wrap=True,
    )
    if usable == 0:
        raise SystemExit(f"no trajectory has more than --history {args.history} readings")

    key_name = f"bench-http-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    processes = Processes()
    results: list[Result] = []
    batch: dict[str, Any] | None = None
    servers: dict[str, Group] = {}
    complete = False
    key: str | None = None
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PROGNOS_BENCH_")}
    base_env.pop("OMP_NUM_THREADS", None)  # each server sets its own below
    try:
        with terminate_on_sigterm():
            key = create_key(args, key_name)
            locust_env = {
                **base_env,
                "PROGNOS_BENCH_READINGS": str(readings_path),
                "PROGNOS_BENCH_HISTORY": str(args.history),
            }

            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = processes.start(
                "prognos serve",
                [tool("prognos"), "serve", "--model", args.model, "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(args.workers), "--home", str(args.home)],
                {**base_env, "OMP_NUM_THREADS": "1"},
                args.run_dir / "prognos-serve.log",
                args.run_dir,
            )  # fmt: skip
            wait_ready(server, f"{url}/health", args.start_timeout, console)
            console.print(f"prognos serve ready at {url}")
            servers["prognos"] = server
            measure_target(
                processes, server, target="prognos", url=url, args=args,
                env={**locust_env, "PROGNOS_BENCH_KEY": key}, console=console, results=results,
            )  # fmt: skip
            batch = batch_bench(url, key, readings, args, console)
            console.print(
                f"  /batch-predict {batch['assets']} assets: p50 {batch['p50_ms']:.1f} ms, "
                f"p95 {batch['p95_ms']:.1f} ms",
                highlight=False,
            )
            server.stop()  # the peer gets the machine to itself

            if not args.skip_peer:
                port = free_port()
                peer_url = f"http://127.0.0.1:{port}"
                # mlflow models serve runs `uvicorn` from PATH: this environment's first.
                path = os.pathsep.join(
                    [str(Path(sys.executable).parent), base_env.get("PATH", os.defpath)]
                )
                peer_env = {
                    **base_env,
                    "PATH": path,
                    "MLFLOW_TRACKING_URI": settings.tracking_uri,
                }
                if args.peer_threads > 0:
                    peer_env["OMP_NUM_THREADS"] = str(args.peer_threads)
                peer = processes.start(
                    "mlflow models serve",
                    [tool("mlflow"), "models", "serve", "-m", f"models:/{args.model}@champion",
                     "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
                     "--workers", str(args.workers)],
                    peer_env,
                    args.run_dir / "mlflow-serve.log",
                    args.run_dir,
                )  # fmt: skip
                wait_ready(peer, f"{peer_url}/ping", args.start_timeout, console)
                console.print(f"mlflow models serve ready at {peer_url}")
                servers["peer"] = peer
                measure_target(
                    processes, peer, target="peer", url=peer_url, args=args, env=locust_env,
                    console=console, results=results,
                )  # fmt: skip
            complete = True
    except KeyboardInterrupt:
        console.print("[red]interrupted: stopping every process[/]")
        raise SystemExit(130) from None
    finally:
        processes.stop_all()
        if key is not None:
            revoke_key(args, key_name)
        server_errors = {name: tracebacks(group) for name, group in servers.items()}
        if results or batch is not None:  # what was measured, even when a later step failed
            report(results, batch, readings, server_errors, args, console, complete=complete)


def report(
    results: list[Result],
    batch: dict[str, Any] | None,
    readings: dict[str, Any],
    server_errors: dict[str, dict[str, int]],
    args: argparse.Namespace,
    console: Console,
    *,
    complete: bool = True,
) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"

    table = Table(
        title=f"{readings['model']} v{readings['version']}: HTTP, {args.workers} worker(s) each"
        + ("" if complete else " [red](incomplete: the run stopped early)[/]"),
        caption="closed: no think time, prediction requests only (the maximum throughput)",
    )
    columns = ("target", "load", "users", "req/s", "p50 ms", "p95 ms", "p99 ms", "429",
               "other fail.", "server CPU")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("target", "load") else "right")
    for r in results:
        other = {k: v for k, v in r.failures_by_kind.items() if k != "429"}
        other_text = ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) or "0"
        flags = " [yellow]![/]" if r.client_cpu_bound else ""
        table.add_row(
            "prognos" if r.target == "prognos" else "mlflow serve",
            "closed" if r.mode == "closed" else "1-3 s",
            str(r.users),
            f"{r.rps:,.1f}{flags}",
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            str(r.failures_by_kind.get("429", 0)),
            other_text,
            f"{r.server_cpu_percent:.0f}%",
        )
    console.print(table)
    if any(r.client_cpu_bound for r in results):
        console.print(
            "[yellow]![/] Locust reported its CPU above 90%: the client limited that run.",
            soft_wrap=True,
        )
    if batch is not None:
        console.print(
            f"POST /batch-predict, {batch['assets']} stored assets with explanations, "
            f"{batch['calls']} calls one at a time: p50 {batch['p50_ms']:.1f} ms, "
            f"p95 {batch['p95_ms']:.1f} ms"
            + (f"; failures {batch['failures']}" if batch["failures"] else ""),
            soft_wrap=True,
            highlight=False,
        )
    closed = {r.target: r for r in results if r.mode == "closed"}
    ratio = None
    if "prognos" in closed and "peer" in closed and closed["peer"].ok_rps > 0:
        ratio = closed["prognos"].ok_rps / closed["peer"].ok_rps
        console.print(
            f"maximum throughput ({args.max_connections} connections, successful requests): "
            f"prognos {closed['prognos'].ok_rps:,.1f} req/s vs mlflow models serve "
            f"{closed['peer'].ok_rps:,.1f} req/s: [bold]{ratio:.1f}x[/]",
            soft_wrap=True,
            highlight=False,
        )
    for name, errors in server_errors.items():
        for error, count in errors.items():
            console.print(
                f"[red]{name}: {count} x {escape(error)}[/] in its log under {args.run_dir}",
                soft_wrap=True,
            )
    if args.output is not None:
        document = {
            "created": datetime.now().isoformat(timespec="seconds"),
            "model": readings["model"],
            "version": readings["version"],
            "fleet": readings["fleet"],
            "readings_source": readings["source"],
            "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
            "settings": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k != "user_counts"
            },
            "results": [asdict(r) for r in results],
            "batch_predict": batch,
            "max_throughput_ratio": ratio,
            "server_tracebacks": server_errors,
            "complete": complete,
            "run_dir": str(args.run_dir),
        }
        args.output.write_text(json.dumps(document, indent=2))
        console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
