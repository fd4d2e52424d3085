"""Fixtures of the alerting tests: a migrated SQLite database under a fresh home, rows written
into it by hand, a local HTTP receiver on 127.0.0.1, and promtool."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table

from prognos.config import Settings
from prognos.storage import Database, database_url, insert_audit, insert_readings
from prognos.storage import monitoring as monitoring_store
from prognos.storage.models import Prediction
from prognos.storage.monitoring import Metric

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLEET, MODEL, VERSION = "rig", "m", "1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", alert_repeat_minutes=60.0)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(database_url(settings))
    database.upgrade()
    yield database
    database.dispose()


class Seed:
    """Rows written straight into the tables, with the times a test needs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._n = 0

    def prediction(self, created_at: datetime, **fields: Any) -> str:
        self._n += 1
        row: dict[str, Any] = {
            "id": f"pred_{self._n}",
            "fleet": FLEET,
            "asset_id": "A",
            "time": self._n,
            "created_at": created_at,
            "model_name": MODEL,
            "model_version": VERSION,
            "failure_probability": 0.1,
            "risk_level": "LOW",
            "rul": 80.0,
            "rul_lower": 60.0,
            "rul_upper": 100.0,
            "should_inspect": False,
            "latency_ms": 5.0,
            "shadow": False,
        }
        row.update(fields)
        table: Table = Prediction.__table__  # type: ignore[assignment]
        with self.db.begin("seeding a prediction") as conn:
            conn.execute(table.insert(), [row])
        return str(row["id"])

    def reading(self, received_at: datetime, *, asset: str = "A", fleet: str = FLEET) -> None:
        self._n += 1
        insert_readings(
            self.db,
            [
                {
                    "fleet": fleet,
                    "asset_id": asset,
                    "time": self._n,
                    "values": {"sensor_1": 1.0},
                    "received_at": received_at,
                }
            ],
        )

    def run(
        self,
        at: datetime,
        metrics: dict[str, float | None],
        *,
        fleet: str = FLEET,
        model: str = MODEL,
        version: str = VERSION,
        threshold: float | None = 0.5,
    ) -> str:
        return monitoring_store.write_run(
            self.db,
            {
                "started_at": at,
                "finished_at": at,
                "kind": "live",
                "fleet": fleet,
                "model_name": model,
                "model_version": version,
                "drift_detected": False,
                "share_drifted": 0.0,
                "summary": {"model": {"threshold": threshold}},
            },
            [Metric(name, value) for name, value in metrics.items()],
        )

    def audit(self, action: str, subject: str, at: datetime) -> None:
        insert_audit(self.db, [{"actor": "test", "action": action, "subject": subject, "at": at}])


@pytest.fixture
def seed(db: Database) -> Seed:
    return Seed(db)


class Receiver:
    """A webhook receiver: answers each POST with the next of ``statuses`` (then 200) and
    keeps what it was sent."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[str, Any]] = []  # (path, JSON body), answered 2xx or not
        self.answered: list[int] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((self.path, json.loads(body)))
                receiver.answered.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.arrived.set()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def closed_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/T000/B000/secret-token"


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path; skipped when it is missing, but a failure under CI (as ``services``)."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool not found (Debian package prometheus; scripts/bootstrap.sh installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"promtool unavailable under CI: {reason}")
        pytest.skip(reason)
    return found
