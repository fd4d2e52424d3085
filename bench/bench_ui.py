"""Dashboard page loads on a fleet of ``--assets`` (1,000) assets, served by a real ``prognos
serve`` process with API keys on.

1. A tiny model trained on 24 simulated assets (about 30 s), or ``--home H --model NAME``.
2. ``--assets`` simulated assets of the same kind, each cut at a random cycle; each one's last
   ``--history`` readings stored (arriving one a minute), with a prediction logged every 4th
   reading as the service would have (probability rising as the asset wears).
3. ``prognos serve`` starts (rebuilding every asset's online state from the stored readings) and
   ``/batch-predict`` scores every asset now: each one's latest prediction is real, with its
   explanation. Alert rules are evaluated and three live monitoring runs stored.
4. Each page is fetched ``--repeat`` times after one warm-up, signed in as an admin: the server's
   own time (its ``Server-Timing`` header), the client's round trip and the page's size.

    .venv/bin/python bench/bench_ui.py                    # 1,000 assets, 20 fetches a page
    .venv/bin/python bench/bench_ui.py --assets 200 --repeat 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from prognos.alerting import evaluate, load_rules
from prognos.config import Settings, get_settings
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.monitoring.build import profile_from_training
from prognos.monitoring.live import load_monitored, profile_drift, run_live
from prognos.storage import api_keys, insert_records
from prognos.storage.database import Database, database_url
from prognos.training.config import TrainConfig
from prognos.training.flow import train

TINY = {
    "folds": 3,
    "cuts_per_asset": 4,
    "members": {
        "xgboost": {"params": {"n_estimators": 60}},
        "sequence": {"params": {"max_epochs": 3, "hidden": 16}},
        "forest": {"enabled": False},
    },
}


def stock(settings: Settings, db: Database, assets: int, history: int, seed: int) -> None:
    """Readings and past predictions of ``assets`` simulated assets cut at random cycles."""
    fleet = simulate_fleet(SimulatorConfig(n_assets=assets, seed=seed)).readings
    rng = np.random.default_rng(seed)
    channels = [c for c in fleet.columns if c.startswith(("setting", "sensor"))]
    now = datetime.now(UTC)
    fleet_name = "simulated"
    for asset, rows in fleet.groupby("asset_id", sort=False):
        life = len(rows)
        cut = int(rng.integers(min(40, life), life + 1))
        kept = rows.iloc[max(0, cut - history) : cut]
        values = kept[channels].to_numpy(dtype=float)
        times = kept["time"].to_numpy()
        arrived = [now - timedelta(minutes=int(cut - 1 - t)) for t in range(cut - len(kept), cut)]
        readings = [
            {"fleet": fleet_name, "asset_id": str(asset), "time": int(times[i]),
             "received_at": arrived[i], "values": dict(zip(channels, values[i], strict=True))}
            for i in range(len(kept))
        ]  # fmt: skip
        predictions = []
        for i in range(0, len(kept) - 1, 4):
            left = life - int(times[i])
            p = float(1 / (1 + np.exp((left - 30) / 8)))
            predictions.append(
                {"fleet": fleet_name, "asset_id": str(asset), "time": int(times[i]),
                 "created_at": arrived[i], "model_name": settings.model_name,
                 "model_version": "1", "failure_probability": p,
                 "risk_level": "HIGH" if p > 0.5 else ("MEDIUM" if p > 0.12 else "LOW"),
                 "rul": float(min(left, 125)), "rul_lower": float(max(0, left - 25)),
                 "rul_upper": None if left + 25 > 125 else float(left + 25),
                 "should_inspect": p > 0.5, "latency_ms": 3.0}
            )  # fmt: skip
        insert_records(db, {"reading": readings, "prediction": predictions})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(settings: Settings, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PROGNOS_HOME": str(settings.home),
        "PROGNOS_DATABASE_URL": database_url(settings),
        "PROGNOS_ALERTS_ENABLED": "false",
    }
    prognos = Path(sys.executable).with_name("prognos")
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(prognos), "serve", "--model", str(settings.model_name), "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=5).json().get("model_loaded"):
                    break
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def sign_in(client: httpx.Client, key: str) -> None:
    page = client.get("/ui/login").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/ui/login", data={"api_key": key, "csrf_token": token})
    assert response.status_code == 200 and "Sign out" in response.text, response.text[:500]


def measure(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    client.get(path)  # warm-up
    server, total, size = [], [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        total.append(1000 * (time.perf_counter() - start))
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        timing = response.headers.get("server-timing", "app;dur=nan")
        server.append(float(timing.split("dur=")[1]))
        size = len(response.content)
    return {
        "server_p50": float(np.percentile(server, 50)),
        "server_p95": float(np.percentile(server, 95)),
        "total_p50": float(np.percentile(total, 50)),
        "total_p95": float(np.percentile(total, 95)),
        "kib": size / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--history", type=int, default=200, help="readings kept per asset")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--home", type=Path, help="a home with a trained model (else trains)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    home = args.home or work / "home"
    settings = get_settings(home=home, model_name=args.model,
                            database_url=f"sqlite:///{work / 'ui.sqlite'}")  # fmt: skip
    if args.home is None:
        t0 = time.perf_counter()
        data = simulate_fleet(SimulatorConfig(n_assets=24, seed=11))
        train(data, TrainConfig.model_validate(TINY), settings, name=args.model,
              reference=profile_from_training)  # fmt: skip
        console.print(f"trained the tiny model in {time.perf_counter() - t0:.0f} s")
    db = Database(database_url(settings))
    db.upgrade()
    admin, _ = api_keys.create_api_key(db, "bench-admin", ["admin"], rate_limit_per_minute=10**6)
    t0 = time.perf_counter()
    stock(settings, db, args.assets, args.history, args.seed)
    console.print(f"stored {args.assets} assets' readings and predictions in "
                  f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    with serve(settings, work / "serve.log") as url:
        headers = {"X-API-Key": admin}
        ids = sorted({r["asset_id"] for r in _assets(db)})
        t0 = time.perf_counter()
        for i in range(0, len(ids), 100):
            body = {"equipment_ids": ids[i : i + 100]}
            response = httpx.post(f"{url}/batch-predict", json=body, headers=headers, timeout=120)
            assert response.status_code == 200, response.text[:300]
        console.print(f"scored every asset now in {time.perf_counter() - t0:.1f} s")
        now = datetime.now(UTC)
        evaluate(settings, db, load_rules(settings), now=now)
        facts = load_monitored(settings, args.model)
        check, unavailable = profile_drift(settings, facts)
        for hours in (2, 1, 0):
            run_live(settings, db, facts, drift=check, drift_unavailable=unavailable,
                     now=now - timedelta(hours=hours), write_report=False)  # fmt: skip
        with httpx.Client(base_url=url, timeout=300, follow_redirects=True) as client:
            sign_in(client, admin)
            riskiest = client.get("/ui/fleet/rows").text.split('href="/ui/assets/')[1].split('"')[0]
            pages = {
                "Fleet (page 1 of the ranked fleet, distribution)": "/ui/",
                "Fleet, page 10": "/ui/fleet?page=10",
                "Fleet, filtered HIGH": "/ui/fleet?risk=HIGH",
                "Fleet search (htmx partial)": "/ui/fleet/rows?q=1",
                "Asset (riskiest)": f"/ui/assets/{riskiest}",
                "Models": "/ui/models",
                "Monitoring": "/ui/monitoring",
                "Alerts": "/ui/alerts",
                "Plan (5 a day, 7 days)": "/ui/plan",
            }
            results = {name: measure(client, path, args.repeat) for name, path in pages.items()}
    table = Table(title=f"Dashboard pages, {args.assets} assets, {args.repeat} fetches each")
    for column in ("page", "server p50 ms", "server p95 ms", "round trip p50 ms",
                   "round trip p95 ms", "size KiB"):  # fmt: skip
        table.add_column(column, justify="left" if column == "page" else "right")
    for name, r in results.items():
        figures = ("server_p50", "server_p95", "total_p50", "total_p95", "kib")
        table.add_row(name, *(f"{r[f]:.1f}" for f in figures))
    console.print(table)
    console.print(f"work files under {work}")


def _assets(db: Database) -> list[dict[str, object]]:
    from prognos.storage.repository import latest_predictions

    return latest_predictions(db, 100_000)


if __name__ == "__main__":
    main()
