"""A dashboard with data behind it, for the ``/ui`` tests: a private copy of the session's tiny
model with a second version (to promote), three API keys (read-only, operator, admin), a few
assets' readings and predictions sent through ``/predict``, feedback, alerts evaluated by the
real rules, and a monitoring run of the real monitor."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prognos.alerting import evaluate, load_rules
from prognos.config import Settings
from prognos.flows.promotion import run_gate
from prognos.monitoring.live import load_monitored, profile_drift, run_live
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.serving.app import create_app
from prognos.storage import api_keys
from prognos.storage.database import Database, database_url
from tests.helpers.loop import private_home, register_again
from tests.helpers.serving import body_for, free_port, readings
from tests.helpers.trained import Trained

ASSETS = 3
READINGS = 30


@dataclass
class Dashboard:
    settings: Settings
    keys: dict[str, str]  # "read", "operator", "admin" -> plaintext key
    assets: list[str]
    versions: tuple[int, int]  # (champion, another registered version)

    def db(self) -> Database:
        return Database(database_url(self.settings))


def make_dashboard(trained: Trained, home: Path) -> Dashboard:
    settings = private_home(
        trained, home, model_name=trained.name, database_url=f"sqlite:///{home / 'ui.sqlite'}",
        compute_process=False,
        alerts_enabled=False,
    )  # fmt: skip
    second = register_again(settings, trained.name)
    # The second version shadows the champion while the predictions are made: the gate compares.
    versions.set_challenger(connect(settings), trained.name, second)
    db = Database(database_url(settings))
    db.upgrade()
    keys = {
        "read": api_keys.create_api_key(db, "viewer", ["read"])[0],
        "operator": api_keys.create_api_key(
            db, "operator", ["read", "ingest", "predict"], rate_limit_per_minute=100_000
        )[0],
        "admin": api_keys.create_api_key(db, "boss", ["admin"])[0],
    }
    assets: list[str] = []
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": keys["operator"]}
        for index in range(ASSETS):
            last: dict[str, Any] = {}
            # The first asset's whole life, so that it ends at risk (alerts); the others' start.
            for row in readings(trained, index, 10_000 if index == 0 else READINGS):
                response = client.post("/predict", json=body_for(row), headers=headers)
                assert response.status_code == 200, response.text
                last = response.json()
            assets.append(last["equipment_id"])
        outcome = {"failure_occurred": False, "inspection_notes": "borescope: fine"}
        body = {"equipment_id": assets[1], "actual_outcome": outcome}
        assert client.post("/feedback", json=body, headers=headers).status_code == 201
    now = datetime.now(UTC)
    rules = load_rules(settings)
    evaluate(settings, db, rules, now=now)
    facts = load_monitored(settings, trained.name)
    check, unavailable = profile_drift(settings, facts)
    # No failure is reported yet, so the gate waits (and changes nothing); audited with both
    # models' figures, which the Models page shows.
    assert run_gate(settings, db, trained.name).verdict == "wait"
    for hours_ago in (2, 1, 0):  # a few runs, for the figures over time
        run_live(settings, db, facts, drift=check, drift_unavailable=unavailable,
                 now=now - timedelta(hours=hours_ago), write_report=False)  # fmt: skip
    db.dispose()
    return Dashboard(settings, keys, assets, (int(facts.version), second))


def sign_in(client: TestClient | httpx.Client, key: str) -> str:
    """Sign ``client`` in with ``key``; returns the session's CSRF token (from a page's form)."""
    page = client.get("/ui/login")
    token = _hidden(page.text, "csrf_token")
    response = client.post(
        "/ui/login", data={"api_key": key, "csrf_token": token, "next": "/ui/"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text
    return _hidden(client.get("/ui/").text, "csrf_token")


def _hidden(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in a thread (lifespan included); yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="ui-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
