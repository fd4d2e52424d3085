"""Stream ingesters as real processes, throwaway Mosquitto brokers and what the database holds,
for the streaming tests and the stream benchmark."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
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
import sqlalchemy as sa

from tests.helpers.serving import free_port

BROKER = "mqtt://127.0.0.1:1883"


def broker_up(host: str = "127.0.0.1", port: int = 1883) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@dataclass
class IngesterProcess:
    """``prognos stream ingest`` as a process group (ingester and its compute process)."""

    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def metrics(self) -> dict[str, float]:
        """The ``prognos_stream_*`` samples of its ``/metrics`` ({} while it does not answer)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line.startswith("prognos_stream_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def subscribed(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return self.metrics().get("prognos_stream_connected") == 1.0

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM the ingester itself (as a service manager would); its exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def ingester_process(
    home: Path, workdir: Path, fleet: str, *, env: dict[str, str], args: tuple[str, ...] = (),
    name: str = "ingest", broker: str = BROKER,
) -> Iterator[IngesterProcess]:  # fmt: skip
    """Start ``prognos stream ingest --fleet FLEET --model tiny``; yields once subscribed and
    kills the group at the end if it still runs."""
    port = free_port()
    full = {**os.environ, "PROGNOS_HOME": str(home), **env}
    prognos = Path(sys.executable).with_name("prognos")
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(prognos), "stream", "ingest", "--fleet", fleet, "--model", "tiny",
             "--broker", broker, "--metrics-port", str(port), *args],
            env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    ingester = IngesterProcess(process, log_path, port)
    try:
        assert wait_for(ingester.subscribed, 120, 0.2), log_path.read_text()
        yield ingester
    finally:
        if process.poll() is None:
            ingester.kill()


@dataclass
class Mosquitto:
    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        assert wait_for(lambda: broker_up(port=self.port), 10), "mosquitto did not start"

    def stop(self) -> None:
        """A clean stop (SIGTERM): the broker saves its sessions and queued messages."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def throwaway_mosquitto(workdir: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of our own on a free port, persistence on (skips when none is installed)."""
    import pytest

    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    port = free_port()
    data = workdir / "mosquitto"
    data.mkdir(exist_ok=True)
    config = workdir / "mosquitto.conf"
    # Started as root, mosquitto would drop to its own user, which cannot write the persistence
    # file under this test's private temp dir (and so would restore no session): stay us.
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {data}/\nmax_queued_messages 100000\nuser {getpass.getuser()}\n"
    )
    broker = Mosquitto(port, config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def stored(db_url: str, fleet: str) -> list[tuple[str, int]]:
    """(asset, time) of every stored reading of ``fleet``, one per row."""
    return [(a, int(t)) for a, t in _rows(db_url, "SELECT asset_id, time FROM readings "
                                          "WHERE fleet = :fleet", fleet)]  # fmt: skip


def dead_letters(db_url: str, fleet: str) -> list[dict[str, Any]]:
    rows = _rows(db_url, "SELECT reason, topic, asset_id, payload, detail, source FROM "
                 "dead_letters WHERE fleet = :fleet", fleet)  # fmt: skip
    keys = ("reason", "topic", "asset_id", "payload", "detail", "source")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def predicted_assets(db_url: str, fleet: str) -> set[str]:
    rows = _rows(db_url, "SELECT DISTINCT asset_id FROM predictions WHERE fleet = :fleet", fleet)
    return {r[0] for r in rows}


def _rows(db_url: str, sql: str, fleet: str) -> list[Any]:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), {"fleet": fleet}).all())
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no tables yet
        return []
    finally:
        engine.dispose()
