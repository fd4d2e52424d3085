"""Acknowledged means durable, and online state is right or refused.

Outages are made with what the test owns: a TCP proxy in front of the shared PostgreSQL (cut and
restored), the real server process killed with SIGKILL, and a throwaway Redis server on a port of
its own, restarted empty. The shared services themselves are never stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prognos.serving.app import create_app
from prognos.storage.database import Database
from tests.helpers.serving import body_for, free_port, open_settings, readings, server_process
from tests.helpers.trained import Trained
from tests.proxy import TcpProxy

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _through(url: str, proxy: TcpProxy) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@pytest.fixture
def pg_proxy(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A migrated throwaway database and a proxy in front of it; yields (url via proxy, proxy)."""
    db = Database(postgres_url)
    db.upgrade()
    db.dispose()
    target = sa.make_url(postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        yield _through(postgres_url, proxy), proxy


def _stored(postgres_url: str, asset: str) -> tuple[list[int], set[str]]:
    """Times of the asset's stored readings and ids of its stored predictions."""
    engine = sa.create_engine(Database(postgres_url).engine.url)
    with engine.connect() as conn:
        times = conn.execute(
            sa.text("SELECT time FROM readings WHERE asset_id = :a ORDER BY time"), {"a": asset}
        ).scalars()
        ids = conn.execute(
            sa.text("SELECT id FROM predictions WHERE asset_id = :a"), {"a": asset}
        ).scalars()
        result = [int(t) for t in times], set(ids)
    engine.dispose()
    return result


def test_every_acknowledged_record_survives_sigkill_during_a_database_outage(
    trained: Trained, tmp_path: Path, postgres_url: str, pg_proxy: tuple[str, TcpProxy]
) -> None:
    via_proxy, proxy = pg_proxy
    env = {"PROGNOS_DATABASE_URL": via_proxy}
    rows = readings(trained, 2, 15)
    asset = str(rows[0]["asset_id"])
    acknowledged: list[str] = []
    with server_process(trained, tmp_path, env, name="first") as server:
        assert server.wait_until(lambda h: h["services"].get("state") == "ok", 30)
        for row in rows[:5]:
            response = httpx.post(f"{server.url}/predict", json=body_for(row), timeout=30)
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["prediction_id"])
        proxy.cut()
        for row in rows[5:]:
            response = httpx.post(f"{server.url}/predict", json=body_for(row), timeout=30)
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["prediction_id"])
        server.kill()  # at once after the last 200: nothing may be only in memory
    proxy.restore()
    with server_process(trained, tmp_path, env, name="second") as server:
        # The new process takes the dead one's spool files and writes them.
        assert server.wait_until(
            lambda h: (
                h["services"]["database"] == "ok"
                and h["detail"]["log_records"]["spooled"] == 0
                and h["services"].get("state") == "ok"
            ),
            60,
        ), server.log.read_text()
        times, ids = _stored(postgres_url, asset)
        assert times == [int(r["time"]) for r in rows]
        assert set(acknowledged) <= ids
        state = httpx.get(f"{server.url}/assets/{asset}", timeout=10).json()["state"]
        assert state["readings_seen"] == len(rows)  # rebuilt after the spool was replayed


def test_a_service_started_while_the_database_is_down_refuses_until_it_has_seeded(
    trained: Trained, tmp_path: Path, pg_proxy: tuple[str, TcpProxy]
) -> None:
    via_proxy, proxy = pg_proxy
    settings = trained.settings(model_name=trained.name, auth_enabled=False,
                                database_url=via_proxy)  # fmt: skip
    rows = readings(trained, 3, 17)
    asset = str(rows[0]["asset_id"])
    with TestClient(create_app(settings)) as client:
        for row in rows[:16]:
            assert client.post("/predict", json=body_for(row)).status_code == 200
    proxy.cut()
    with TestClient(create_app(settings)) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["services"]["state"] == "rebuilding"
        refused = client.post("/predict", json=body_for(rows[16]))
        assert refused.status_code == 503, refused.text
        assert "not rebuilt" in refused.json()["detail"]
        assert client.get(f"/assets/{asset}").status_code == 503
        proxy.restore()
        deadline = time.monotonic() + 30
        while client.get("/health").json()["services"]["state"] != "ok":
            assert time.monotonic() < deadline, "state not rebuilt after the database returned"
            time.sleep(0.2)
        assert client.get(f"/assets/{asset}").json()["state"]["readings_seen"] == 16
        answer = client.post("/predict", json=body_for(rows[16]))
        assert answer.status_code == 200, answer.text
        after = answer.json()["prediction"]
    with TestClient(create_app(open_settings(trained, tmp_path / "ref.db"))) as reference:
        for row in rows[:16]:
            reference.post("/predict", json=body_for(row))
        expected = reference.post("/predict", json=body_for(rows[16])).json()["prediction"]
    _assert_same(after, expected)


class _Redis:
    """A redis-server of this test's own, without persistence: a restart loses everything."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


def _predict_until_answered(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    """503 is the honest answer while the state is rebuilt; anything else must be a 200."""
    deadline = time.monotonic() + 30
    while True:
        response = client.post("/predict", json=body)
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            prediction: dict[str, Any] = response.json()["prediction"]
            return prediction
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def test_a_redis_that_restarts_empty_is_noticed_and_rebuilt(
    trained: Trained, tmp_path: Path
) -> None:
    server = _Redis(tmp_path)
    server.start()
    rows = readings(trained, 4, 20)
    asset = str(rows[0]["asset_id"])
    settings = open_settings(trained, tmp_path / "service.db", redis_url=server.url)
    try:
        with TestClient(create_app(settings)) as client:
            for row in rows[:12]:
                assert client.post("/predict", json=body_for(row)).status_code == 200
            server.stop()
            server.start()  # same port, no data: every state and the generation are gone
            seen = [_predict_until_answered(client, body_for(row)) for row in rows[12:]]
            assert client.get(f"/assets/{asset}").json()["state"]["readings_seen"] == len(rows)
    finally:
        server.stop()
    with TestClient(create_app(open_settings(trained, tmp_path / "ref.db"))) as reference:
        expected = [reference.post("/predict", json=body_for(r)).json()["prediction"] for r in rows]
    assert len(seen) == len(expected[12:])
    for got, want in zip(seen, expected[12:], strict=True):
        _assert_same(got, want)


def _assert_same(got: dict[str, Any], want: dict[str, Any], where: str = "") -> None:
    """Equal predictions: numbers to 1e-9 (EWMAs rebuilt from each asset's tail agree with a
    full replay to about 1e-12, not bit for bit), everything else exactly."""
    assert got.keys() == want.keys(), where
    for key, value in want.items():
        if isinstance(value, dict):
            _assert_same(got[key], value, f"{where}{key}.")
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-9), f"{where}{key}"
        else:
            assert got[key] == value, f"{where}{key}"
