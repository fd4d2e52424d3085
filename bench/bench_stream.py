"""Live ingestion end to end: ``--assets`` simulated assets publishing over MQTT, one ingester
taking them through the shared ingestion core (compute process on), as deployed.

The publisher is ``prognos stream publish`` (its own process, at ``--rate`` messages/s); the
ingester runs here (``StreamIngester`` over ``MqttSubscription``), logging to a fresh SQLite file
(``--database-url`` for PostgreSQL). The broker is a throwaway Mosquitto on a free port whose
queues do not drop messages (the stock ``max_queued_messages`` of 1000 would), or ``--broker``.

After ``--warmup`` seconds, over ``--seconds`` it measures:

- sustained readings/s end to end: readings acknowledged durable, folded into the state and
  their asset scored (the ingester acknowledges a batch only after all of that);
- publish-to-prediction latency p50/p95 (the publisher's ``sent_at`` to the asset's score on its
  newest reading), and the share of those rescores within 1 s;
- the publisher's achieved rate and the backlog (published, not yet acknowledged) at the end.

Goal: >= 5,000 readings/s for 5 minutes with p95 <= 1 s, on the 2-core dev machine::

    .venv/bin/prognos demo --home /tmp/h            # or any home with a registered model
    .venv/bin/python bench/bench_stream.py --home /tmp/h --model demo --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from prognos.config import get_settings
from prognos.streaming.ingester import StreamIngester
from prognos.streaming.messages import subscription
from prognos.streaming.transport import MqttSubscription


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _mosquitto(workdir: Path) -> Iterator[str]:
    if shutil.which("mosquitto") is None:
        sys.exit("mosquitto is not installed; pass --broker mqtt://HOST:PORT")
    port = _free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                      "max_queued_messages 0\nmax_queued_bytes 0\n")  # fmt: skip
    broker = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.05)
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        broker.terminate()
        broker.wait(10)


def _count(ingester: StreamIngester, name: str) -> float:
    return ingester.metrics.value(f"prognos_stream_{name}_total")


async def _run(args: argparse.Namespace, broker: str, database_url: str) -> None:
    fleet = f"bench{uuid.uuid4().hex[:8]}"
    settings = get_settings(home=args.home, model_name=args.model, fleet=fleet,
                            database_url=database_url)  # fmt: skip
    sub = MqttSubscription(broker, subscription(fleet), client_id=f"prognos-ingest-{fleet}",
                           session_expiry=600,
                           receive_maximum=settings.mqtt_receive_maximum)  # fmt: skip
    ingester = StreamIngester(settings, sub)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    await ingester.ready.wait()
    while ingester.core.model is None or not sub.connected:
        await asyncio.sleep(0.1)
    total = args.warmup + args.seconds
    per_asset = math.ceil(args.rate * (total + 10) / args.assets)
    prognos = Path(sys.executable).with_name("prognos")
    publisher = subprocess.Popen(
        [str(prognos), "stream", "publish", "--fleet", fleet, "--broker", broker, "--assets",
         str(args.assets), "--readings", str(per_asset), "--rate", str(args.rate)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    print(f"{args.assets} assets at {args.rate:,.0f} msg/s offered; model {args.model}; "
          f"database {'given' if args.database_url else 'SQLite (fresh file)'}; warmup "
          f"{args.warmup:g} s, measured {args.seconds:g} s")  # fmt: skip
    await asyncio.sleep(args.warmup)
    t0, stored0, received0 = (
        time.perf_counter(),
        _count(ingester, "readings_stored"),
        _count(ingester, "messages_received"),
    )
    mark = len(ingester.latencies)
    for _ in range(int(args.seconds)):
        await asyncio.sleep(1.0)
        if task.done():
            break
    t1 = time.perf_counter()
    stored1, received1 = _count(ingester, "readings_stored"), _count(ingester, "messages_received")
    latencies = np.array(list(ingester.latencies)[mark:])
    publisher.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        publisher.wait(10)
    backlog = len(ingester.inbox)
    stop.set()
    await task
    span = t1 - t0
    print(f"sustained end to end: {(stored1 - stored0) / span:,.0f} readings/s "
          f"(received {(received1 - received0) / span:,.0f} msg/s) over {span:.0f} s")  # fmt: skip
    if latencies.size:
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"publish-to-prediction latency: p50 {p50 * 1000:,.0f} ms, p95 {p95 * 1000:,.0f} ms;"
              f" rescored within 1 s: {np.mean(latencies <= 1.0):.1%} of {latencies.size:,} "
              "rescores")  # fmt: skip
    batches = ingester.metrics.value("prognos_stream_batch_seconds_count")
    if batches:
        mean = ingester.metrics.value("prognos_stream_batch_seconds_sum") / batches
        print(f"batches: {batches:,.0f}, mean {mean * 1000:,.0f} ms, "
              f"{_count(ingester, 'messages_acked') / batches:,.0f} messages each")  # fmt: skip
    dead = sum(s.value for m in ingester.metrics.dead_letters.collect() for s in m.samples
               if s.name.endswith("_total"))  # fmt: skip
    print(f"dead letters: {dead:.0f}; taken but not yet processed at the end: {backlog:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="prognos home with the model")
    parser.add_argument("--model", required=True, help="registered model to score with")
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5000.0, help="messages/s offered")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--broker", help="an existing broker instead of a throwaway Mosquitto")
    parser.add_argument("--database-url", help="e.g. postgresql+psycopg://... (default SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        database_url = args.database_url or f"sqlite:///{Path(tmp) / 'stream.db'}"
        with contextlib.ExitStack() as stack:
            broker = args.broker or stack.enter_context(_mosquitto(Path(tmp)))
            asyncio.run(_run(args, broker, database_url))


if __name__ == "__main__":
    main()
