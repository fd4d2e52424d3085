"""``prognos serve --workers 2`` as real processes: state shared through Redis, and ``/metrics``
adding up both workers (prometheus-client's multiprocess mode, set up by ``prognos serve``)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.serving import body_for, readings
from tests.helpers.trained import Trained

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def two_workers(
    trained: Trained, tmp_path: Path, redis_url: str, redis_namespace: str
) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "PROGNOS_HOME": str(trained.home),
        "PROGNOS_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "PROGNOS_REDIS_URL": redis_url,
        "PROGNOS_REDIS_NAMESPACE": redis_namespace,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    prognos = Path(sys.executable).with_name("prognos")
    command = [str(prognos), "serve", "--model", trained.name, "--port", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [*command, "--workers", "2", "--no-auth"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).json().get("model_loaded"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service did not start in 120 s"
            time.sleep(0.5)
        # Both workers must be up: each one sets its model gauge when its model is loaded.
        while len(_worker_files(trained.home, "gauge_livemax")) < 2:
            assert time.monotonic() < deadline, "second worker did not start"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()


def _worker_files(home: Path, kind: str) -> set[str]:
    return {p.name for p in (home / "run").glob(f"metrics-*/{kind}_*.db")}


def _sample(metrics: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"{metric}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_two_worker_processes_share_state_and_add_up_their_metrics(
    two_workers: str, trained: Trained
) -> None:
    url = two_workers
    rows = readings(trained, 3, 60)
    sent = 0
    last = None
    for row in rows:
        # A new connection per request, so the kernel spreads them over both workers.
        response = httpx.post(f"{url}/predict", json=body_for(row), timeout=30)
        assert response.status_code == 200, response.text
        last = response.json()
        sent += 1
        if sent >= 20 and len(_worker_files(trained.home, "counter")) >= 2:
            break
    assert len(_worker_files(trained.home, "counter")) >= 2, "one worker took every request"
    assert last is not None and last["time"] == int(rows[sent - 1]["time"])  # state was shared
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert _sample(metrics, "prognos_predictions_total") == sent
    assert _sample(metrics, "prognos_api_requests_total", endpoint="/predict", status="200") == sent
    assert _sample(metrics, "prognos_model_info", name=trained.name) == 1  # livemax of both
