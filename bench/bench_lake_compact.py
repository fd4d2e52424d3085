"""Lake compaction: a lake fed by many small exports, read before and after ``prognos lake
compact``.

Run: ``.venv/bin/python bench/bench_lake_compact.py [--assets 100] [--exports 200] [--s3]``.

A simulated fleet's readings are stored (SQLite) in ``--exports`` slices in time order, as a
stream would bring them, and the lake exported after each slice: one small file per export, all
in one date partition. Then the fleet is read as ``lake:`` (median of 3 reads), compacted, and
read again. ``--s3`` puts the lake on moto's S3 server on 127.0.0.1 (``pip install
'moto[server]' s3fs``) instead of a local folder: every file there costs HTTP requests.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.sources import load_source
from prognos.storage import Database, insert_readings
from prognos.storage.lake import open_lake
from prognos.storage.lake_compact import compact_fleet
from prognos.storage.lake_export import export_fleet


def _s3_url() -> tuple[str, object]:
    import s3fs
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/lake", server


def _read_seconds(url: str, rows: int) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loaded = load_source(f"lake:{url}?fleet=bench")
        times.append(time.perf_counter() - start)
        assert len(loaded.readings) == rows, (len(loaded.readings), rows)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--exports", type=int, default=200)
    parser.add_argument("--s3", action="store_true", help="the lake on moto's S3 server")
    args = parser.parse_args()

    data = simulate_fleet(SimulatorConfig(n_assets=args.assets, seed=3))
    frame = data.readings.sort_values(["time", "asset_id"], kind="mergesort")
    channels = data.spec.columns[2:]
    received = datetime(2026, 5, 4, 12, tzinfo=UTC)
    rows = [
        {"fleet": "bench", "asset_id": str(r["asset_id"]), "time": int(r["time"]),
         "values": {c: float(r[c]) for c in channels}, "received_at": received}
        for r in frame.to_dict("records")
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = str(Path(tmp) / "lake")
        if args.s3:
            url, server = _s3_url()
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.upgrade()
        lake = open_lake(url)
        lake.write_spec("bench", data.spec.model_dump(mode="json"))
        step = -(-len(rows) // args.exports)
        start = time.perf_counter()
        for i in range(0, len(rows), step):
            insert_readings(db, rows[i : i + step])
            export_fleet(db, lake, "bench")
        fed = time.perf_counter() - start
        before_files = len(lake.files("bench"))
        before = _read_seconds(url, len(rows))
        start = time.perf_counter()
        result = compact_fleet(lake, "bench", min_files=2)
        compacted = time.perf_counter() - start
        after = _read_seconds(url, len(rows))
        after_files = len(lake.files("bench"))
        db.dispose()
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    where = "moto S3 on 127.0.0.1" if args.s3 else "local disk"
    print(f"{args.assets} assets, {len(rows):,} readings, {before_files} exports "
          f"({fed:.1f} s to store and export), lake on {where}")  # fmt: skip
    print("| | data files | read as lake: (median of 3) |")
    print("|---|---|---|")
    print(f"| before compaction | {before_files} | {before:.3f} s |")
    print(f"| after compaction | {after_files} | {after:.3f} s |")
    print(f"compaction: {compacted:.3f} s, {result.rows:,} rows merged, {result.skipped or 'none'}"
          " skipped")  # fmt: skip


if __name__ == "__main__":
    main()
