"""What one live monitoring run costs as the window grows (``prognos monitor run`` without
drift, which has its own engine and figures): reading the window from the database, data
quality, labelling and performance, storing the run and writing its report.

A C-MAPSS-shaped fleet (3 settings, 21 sensors) of ``--assets`` assets with ``--cycles`` readings
each, one prediction per reading and a reported failure for half of the assets, in a fresh SQLite
file (or PostgreSQL with ``--postgres URL``: a throwaway database, dropped after). Printed per
size: seconds per run (median of ``--repeat``) and readings per second::

    .venv/bin/python bench/bench_monitoring.py --assets 50,200 --cycles 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from prognos.config import get_settings
from prognos.fleet import cmapss_spec
from prognos.monitoring.live import MonitoredModel, run_live
from prognos.storage import Database, insert_records

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def seed(db: Database, assets: int, cycles: int, seed: int = 0) -> int:
    spec = cmapss_spec("bench")
    channels = [*spec.setting_names, *spec.sensor_names]
    rng = np.random.default_rng(seed)
    total = assets * cycles
    for a in range(assets):
        asset = f"u{a:04d}"
        stamps = [NOW - timedelta(seconds=total - (a * cycles + t)) for t in range(cycles)]
        values = rng.normal(100.0, 5.0, (cycles, len(channels)))
        probability = rng.random(cycles)
        insert_records(
            db,
            {
                "reading": [
                    {"fleet": "bench", "asset_id": asset, "time": t + 1, "received_at": stamps[t],
                     "values": dict(zip(channels, map(float, values[t]), strict=True))}
                    for t in range(cycles)
                ],
                "prediction": [
                    {"fleet": "bench", "asset_id": asset, "time": t + 1, "created_at": stamps[t],
                     "model_name": "bench", "model_version": "1",
                     "failure_probability": float(probability[t]), "risk_level": "LOW",
                     "rul": float(cycles - t), "rul_lower": float(cycles - t - 20),
                     "rul_upper": float(cycles - t + 20),
                     "should_inspect": bool(probability[t] > 0.5)}
                    for t in range(cycles)
                ],
                "feedback": [
                    {"fleet": "bench", "asset_id": asset, "failure_occurred": True,
                     "failure_cycle": cycles, "created_at": NOW}
                ] if a % 2 == 0 else [],
            },
        )  # fmt: skip
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="50,200", help="comma-separated fleet sizes")
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="server URL to create a database on")
    args = parser.parse_args()
    model = MonitoredModel(
        name="bench", version="1", spec=cmapss_spec("bench"), horizon=30, rul_cap=125.0,
        threshold=0.5, coverage=0.9,
    )  # fmt: skip
    table = Table("database", "assets", "readings", "seconds per run", "readings / s")
    for assets in (int(n) for n in args.assets.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            url, admin, name = f"sqlite:///{tmp}/bench.db", None, ""
            if args.postgres:
                name = f"prognos_bench_{uuid.uuid4().hex[:8]}"
                admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                url = sa.make_url(args.postgres).set(database=name).render_as_string(False)
            db = Database(url)
            db.upgrade()
            readings = seed(db, assets, args.cycles)
            settings = get_settings(home=Path(tmp), monitoring_window_hours=24 * 365)
            seconds = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                run_live(settings, db, model, now=NOW)
                seconds.append(time.perf_counter() - start)
            db.dispose()
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
        median = float(np.median(seconds))
        table.add_row(
            db.dialect, str(assets), f"{readings:,}", f"{median:.2f}", f"{readings / median:,.0f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
