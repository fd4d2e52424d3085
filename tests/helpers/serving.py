"""Request bodies and settings for the serving tests, built from the session's tiny model."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from prognos.config import Settings
from tests.helpers.trained import Trained


def body_for(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The ``/predict`` body of one simulated reading, with ``changes`` applied."""
    body = {
        "equipment_id": str(row["asset_id"]),
        "cycle": int(row["time"]),
        "sensor_readings": {k: float(v) for k, v in row.items() if k.startswith("sensor")},
        "operational_settings": {k: float(v) for k, v in row.items() if k.startswith("setting")},
    }
    body.update(changes)
    return body


def open_settings(trained: Trained, db_file: Path, **overrides: Any) -> Settings:
    """The trained model served without keys, logging to ``db_file`` (SQLite)."""
    return trained.settings(
        model_name=trained.name,
        database_url=f"sqlite:///{db_file}",
        auth_enabled=False,
        **overrides,
    )


def readings(trained: Trained, asset_index: int = 0, n: int = 40) -> list[dict[str, Any]]:
    """The first ``n`` readings of one unseen asset."""
    fleet = trained.fleet
    asset = fleet["asset_id"].unique()[asset_index]
    return fleet[fleet["asset_id"] == asset].head(n).to_dict("records")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """``prognos serve`` as a real process group (server, fork server, compute process)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=5).json()
        return body

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Poll ``/health`` until ``predicate`` holds for its body; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if predicate(self.health()):
                    return True
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        """SIGKILL the whole group: nothing gets to flush or close anything."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@contextlib.contextmanager
def server_process(
    trained: Trained, workdir: Path, env: dict[str, str], *, name: str = "serve"
) -> Iterator[ServerProcess]:
    """Start ``prognos serve`` for the trained model (no keys) with ``env`` added; yields once
    it answers ``/health`` with a model loaded, and stops it (SIGTERM) at the end."""
    port = free_port()
    full = {**os.environ, "PROGNOS_HOME": str(trained.home), **env}
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    prognos = Path(sys.executable).with_name("prognos")
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(prognos), "serve", "--model", trained.name, "--port", str(port), "--no-auth"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        assert server.wait_until(lambda h: bool(h.get("model_loaded")), 120), log_path.read_text()
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
