"""What a challenger in the shadow costs the champion's answers: ``/predict`` at N users (1-3 s
think time, the reference profile of ``bench_http.py``) without and with a ``challenger``.

Steps (the machinery is ``bench_http.py``'s: its server, Locust runs and readings):

1. Register the champion's model again as a new version: a challenger exactly as costly as the
   champion (the retraining loop's challengers are the same ensemble), without an alias yet.
2. Start ``prognos serve`` (one worker, compute process on, ``PROGNOS_MODEL_POLL_SECONDS=2`` so
   that alias moves are followed within seconds).
3. ``--rounds`` times, alternating (the same server, so that neither phase always runs on a fresh
   one): without a challenger (the alias removed, ``/health`` shows no shadow), then with one
   (the alias set, ``/health`` shows the shadow ``ok``, i.e. loaded and seeded). Each phase is
   one Locust run of ``--users`` for ``--duration`` seconds after the ramp-up, then a wait for
   the server to go idle; for a shadow phase the shadow's figures over the run are read from
   ``/health`` (predictions it logged, champion predictions offered to it, events dropped).
4. The alias and the extra version are removed at the end, whatever happens.

Run after ``prognos train --home H`` (model ``FD001``) or ``prognos demo --home H`` (``demo``)::

    .venv/bin/python bench/bench_shadow.py --home H --model FD001 --users 1000 --duration 60

Everything it writes (Locust CSVs and logs per phase, the server's log, its fresh log database)
is under ``--run-dir`` (default ``H/bench/shadow-<time>``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # bench/ is not a package: its scripts import each other
    sys.path.insert(0, str(BENCH))

from bench_http import (  # noqa: E402
    Processes,
    Result,
    create_key,
    free_port,
    raise_open_files_limit,
    revoke_key,
    run_locust,
    terminate_on_sigterm,
    tool,
    tracebacks,
    wait_ready,
    write_readings,
)

FIGURES = ("scored", "requested", "dropped", "missed", "failures")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="prognos home with the model")
    parser.add_argument("--model", required=True, help="registered model; its champion is served")
    parser.add_argument("--users", type=int, default=1000, help="Locust users per phase")
    parser.add_argument("--duration", type=int, default=60, help="measured seconds per phase")
    parser.add_argument("--rounds", type=int, default=2, help="without/with pairs")
    parser.add_argument("--spawn-rate", type=float, help="users started per second [users/5]")
    parser.add_argument("--locust-processes", type=int, default=1, help="Locust --processes")
    parser.add_argument("--data", help="KIND:PATH readings to replay [the model's fleet]")
    parser.add_argument("--history", type=int, default=50, help="(readings file) history")
    parser.add_argument("--run-dir", type=Path, help="where logs and CSVs go [HOME/bench/...]")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="server start, s")
    parser.add_argument("--shadow-timeout", type=float, default=300.0, help="shadow start, s")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="idle wait, s")
    parser.add_argument("--output", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args()
    if args.users < 1 or args.rounds < 1:
        parser.error("--users and --rounds must be positive")
    args.home = args.home.resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.run_dir = (args.run_dir or args.home / "bench" / f"shadow-{stamp}").resolve()
    return args


def shadow_of(url: str) -> dict[str, Any] | None:
    shadow: dict[str, Any] | None = httpx.get(f"{url}/health", timeout=10.0).json()["shadow"]
    return shadow


def wait_shadow(url: str, wanted: bool, timeout: float, console: Console) -> dict[str, Any] | None:
    """Poll ``/health`` until the shadow is ``ok`` (``wanted``) or gone; its entry."""
    deadline = time.monotonic() + timeout
    what = "the shadow to be seeded" if wanted else "the shadow to stop"
    with console.status(f"Waiting for {what}"):
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                shadow = shadow_of(url)
                if (shadow is not None and shadow["state"] == "ok") if wanted else shadow is None:
                    return shadow
            time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}; last /health shadow: {shadow_of(url)}")


def phase(
    processes: Processes,
    server: Any,
    url: str,
    *,
    label: str,
    challenger: bool,
    args: argparse.Namespace,
    env: dict[str, str],
    console: Console,
) -> dict[str, Any]:
    """One Locust run; with the shadow's figures over it when there is a challenger."""
    before = shadow_of(url) if challenger else None
    run_args = argparse.Namespace(**vars(args))
    run_args.run_dir = args.run_dir / label
    run_args.run_dir.mkdir(parents=True, exist_ok=True)
    result: Result = run_locust(
        processes, server, target="prognos", url=url, users=args.users,
        duration=args.duration, closed=False, args=run_args, env=env, console=console,
    )  # fmt: skip
    out: dict[str, Any] = {"label": label, "challenger": challenger, "result": asdict(result)}
    if challenger:
        after = shadow_of(url)
        if before is None or after is None or after["version"] != before["version"]:
            raise SystemExit(f"the shadow changed during {label}: {before} -> {after}")
        out["shadow"] = {k: after[k] - before[k] for k in FIGURES} | {"queued": after["queued"]}
        console.print(f"  shadow over {label}: {out['shadow']}", highlight=False)
    return out


def main() -> None:
    args = parse_args()
    raise_open_files_limit()
    console = Console(width=max(120, Console().width))
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # only this process's model load
    import mlflow

    from prognos.config import get_settings
    from prognos.registry import versions
    from prognos.registry.tracking import connect

    args.run_dir.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("PROGNOS_DATABASE_URL"):  # a fresh log database per run
        os.environ["PROGNOS_DATABASE_URL"] = f"sqlite:///{args.run_dir / 'service.db'}"
    settings = get_settings(home=args.home)
    console.print(f"run directory (logs, Locust CSVs): {args.run_dir}", soft_wrap=True)
    readings_path = args.run_dir / "readings.json"
    with console.status(f"Loading {args.model}@champion and writing the readings"):
        readings = write_readings(readings_path, settings, args.model, args.data)
    client = connect(settings)
    if versions.challenger(client, args.model) is not None:
        raise SystemExit(f"{args.model} has a challenger already: this bench sets its own")
    champion = readings["version"]
    challenger = str(mlflow.register_model(f"models:/{args.model}/{champion}", args.model).version)
    console.print(f"champion {args.model}/{champion}; challenger (same model) {challenger}")

    key_name = f"bench-shadow-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    processes = Processes()
    phases: list[dict[str, Any]] = []
    server = None
    key = None
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PROGNOS_BENCH_")}
    base_env.pop("OMP_NUM_THREADS", None)
    try:
        with terminate_on_sigterm():
            key = create_key(args, key_name)
            env = {
                **base_env,
                "PROGNOS_BENCH_READINGS": str(readings_path),
                "PROGNOS_BENCH_HISTORY": str(args.history),
                "PROGNOS_BENCH_KEY": key,
            }
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = processes.start(
                "prognos serve",
                [tool("prognos"), "serve", "--model", args.model, "--host", "127.0.0.1",
                 "--port", str(port), "--home", str(args.home)],
                {**base_env, "OMP_NUM_THREADS": "1", "PROGNOS_MODEL_POLL_SECONDS": "2"},
                args.run_dir / "prognos-serve.log",
                args.run_dir,
            )  # fmt: skip
            wait_ready(server, f"{url}/health", args.start_timeout, console)
            for round_ in range(1, args.rounds + 1):
                for with_challenger in (False, True):
                    if with_challenger:
                        versions.set_challenger(client, args.model, int(challenger))
                    else:
                        versions.clear_challenger(client, args.model)
                    wait_shadow(url, with_challenger, args.shadow_timeout, console)
                    label = f"{'with' if with_challenger else 'without'}-{round_}"
                    phases.append(
                        phase(processes, server, url, label=label, challenger=with_challenger,
                              args=args, env=env, console=console)
                    )  # fmt: skip
    except KeyboardInterrupt:
        console.print("[red]interrupted: stopping every process[/]")
        raise SystemExit(130) from None
    finally:
        processes.stop_all()
        versions.clear_challenger(client, args.model)
        with contextlib.suppress(Exception):
            client.delete_model_version(args.model, challenger)
        if key is not None:
            revoke_key(args, key_name)
        errors = tracebacks(server) if server is not None else {}
        report(phases, errors, readings, challenger, args, console)


def report(
    phases: list[dict[str, Any]],
    errors: dict[str, int],
    readings: dict[str, Any],
    challenger: str,
    args: argparse.Namespace,
    console: Console,
) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"

    table = Table(
        title=f"{readings['model']} v{readings['version']}, {args.users} users (1-3 s), "
        f"{args.duration} s each: without / with challenger v{challenger} in the shadow"
    )
    for column in ("phase", "req/s", "p50 ms", "p95 ms", "p99 ms", "in handler p95 <=",
                   "failures", "server CPU", "shadow scored / offered", "dropped"):  # fmt: skip
        table.add_column(column, justify="left" if column == "phase" else "right")
    for p in phases:
        r, shadow = p["result"], p.get("shadow")
        table.add_row(
            p["label"],
            f"{r['rps']:,.1f}",
            ms(r["p50_ms"]),
            ms(r["p95_ms"]),
            ms(r["p99_ms"]),
            ms(r["server_side"].get("p95_at_most_ms")),
            str(r["failures"]),
            f"{r['server_cpu_percent']:.0f}%",
            "-" if shadow is None else f"{shadow['scored']:,} / {shadow['requested']:,}",
            "-" if shadow is None else f"{shadow['dropped']:,}",
        )
    console.print(table)
    for error, count in errors.items():
        console.print(f"[red]server: {count} x {error}[/]", soft_wrap=True)
    if args.output is not None:
        document = {
            "created": datetime.now().isoformat(timespec="seconds"),
            "model": readings["model"],
            "champion": readings["version"],
            "challenger": challenger,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "phases": phases,
            "server_tracebacks": errors,
            "run_dir": str(args.run_dir),
        }
        args.output.write_text(json.dumps(document, indent=2))
        console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
