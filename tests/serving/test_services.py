"""The service on real PostgreSQL and Redis (127.0.0.1): shared state across workers, and outages
made by a TCP proxy this test controls (the shared services themselves are never stopped)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prognos.serving.app import create_app
from prognos.storage import repository
from tests.helpers.serving import body_for, readings
from tests.helpers.trained import Trained
from tests.proxy import TcpProxy

pytestmark = pytest.mark.services


def _url_through(url: str, proxy: TcpProxy) -> str:
    parsed = sa.make_url(url)
    return parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _wait(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_two_workers_share_state_through_redis(
    trained: Trained, tmp_path: Any, redis_url: str, redis_namespace: str
) -> None:
    """Readings of one asset alternate between two service instances (as uvicorn workers or
    replicas would receive them); every prediction equals a single instance's."""
    common = {
        "model_name": trained.name,
        "auth_enabled": False,
        "redis_url": redis_url,
        "redis_namespace": redis_namespace,
    }
    rows = readings(trained, 0, 40)
    one = trained.settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", **common)
    two = trained.settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", **common)
    shared = []
    with TestClient(create_app(one)) as a, TestClient(create_app(two)) as b:
        for i, row in enumerate(rows):
            client = a if i % 2 == 0 else b
            response = client.post("/predict", json=body_for(row))
            assert response.status_code == 200, response.text
            shared.append(response.json()["prediction"])
        # Each instance sees the other's last reading: a repeat is a duplicate on both.
        assert a.post("/predict", json=body_for(rows[-1])).json()["prediction"] == shared[-1]
        asset = str(rows[0]["asset_id"])
        batch = b.post("/batch-predict", json={"equipment_ids": [asset, "ghost"]}).json()
        assert batch["predictions"][0]["prediction"] == shared[-1]  # one MGET for both
        assert batch["errors"][0]["status"] == 404
    alone = trained.settings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        model_name=trained.name,
        auth_enabled=False,
    )
    with TestClient(create_app(alone)) as c:
        single = [c.post("/predict", json=body_for(row)).json()["prediction"] for row in rows]
    assert shared == single


def test_redis_outage_degrades_then_recovers(
    trained: Trained, tmp_path: Any, redis_url: str, redis_namespace: str
) -> None:
    target = sa.make_url(redis_url.replace("redis://", "postgresql://"))
    with TcpProxy(target.host or "127.0.0.1", target.port or 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/{target.database or 0}"
        settings = trained.settings(
            model_name=trained.name,
            auth_enabled=False,
            redis_url=url,
            redis_namespace=redis_namespace,
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        )
        rows = readings(trained, 1, 12)
        with TestClient(create_app(settings)) as client:
            for row in rows[:5]:
                assert client.post("/predict", json=body_for(row)).status_code == 200
            proxy.cut()
            health = client.get("/health").json()
            assert health["status"] == "degraded" and health["services"]["state_store"] == "down"
            refused = client.post("/predict", json=body_for(rows[5]))
            assert refused.status_code == 503
            assert "state" in refused.json()["detail"] and "Redis" in refused.json()["detail"]
            proxy.restore()
            assert _wait(lambda: client.get("/health").json()["status"] == "ok")
            for row in rows[5:]:
                response = client.post("/predict", json=body_for(row))
                assert response.status_code == 200, response.text
            assert response.json()["time"] == int(rows[-1]["time"])


def test_database_outage_spools_predictions_and_loses_none(
    trained: Trained, postgres_url: str
) -> None:
    target = sa.make_url(postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        settings = trained.settings(
            model_name=trained.name,
            auth_enabled=False,
            database_url=_url_through(postgres_url, proxy),
        )
        rows = readings(trained, 2, 30)
        ids = []
        with TestClient(create_app(settings)) as client:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            for row in rows[:10]:
                ids.append(client.post("/predict", json=body_for(row)).json()["prediction_id"])
            assert runtime.core.writer.flush(10)
            proxy.cut()
            for row in rows[10:20]:
                response = client.post("/predict", json=body_for(row))
                assert response.status_code == 200, response.text  # served while the DB is away
                ids.append(response.json()["prediction_id"])
            assert runtime.core.writer.flush(10)
            assert _wait(lambda: client.get("/health").json()["services"]["database"] == "down")
            # A spooled prediction is still explainable.
            assert client.get(f"/explain/{ids[-1]}").status_code == 200
            proxy.restore()
            for row in rows[20:]:
                ids.append(client.post("/predict", json=body_for(row)).json()["prediction_id"])
            assert _wait(lambda: client.get("/health").json()["services"]["database"] == "ok")
            assert runtime.core.writer.flush(10)
            assert _wait(lambda: runtime.core.writer.status()["spooled"] == 0)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT id FROM predictions")]
        times = [r[0] for r in conn.exec_driver_sql("SELECT time FROM readings ORDER BY time")]
    engine.dispose()
    assert sorted(stored) == sorted(ids) and len(ids) == 30
    assert times == [int(r["time"]) for r in rows]


@pytest.mark.slow
def test_a_worker_that_swaps_late_repairs_what_the_first_one_missed(
    trained: Trained, tmp_path: Any, redis_url: str, redis_namespace: str
) -> None:
    """Two workers share Redis and one database; the champion moves to a model with other
    scalers (its own state namespace). Worker A swaps first; worker B, still on the old model,
    accepts readings A's new state never sees. When B swaps, it rebuilds that asset's new
    state from the stored readings, so both then answer as a service that saw every reading."""
    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.registry import versions
    from prognos.registry.tracking import connect
    from prognos.training.config import TrainConfig
    from prognos.training.flow import train
    from tests.helpers.trained import FAST

    settings = trained.settings(
        model_name=trained.name, auth_enabled=False, redis_url=redis_url,
        redis_namespace=redis_namespace, database_url=f"sqlite:///{tmp_path / 'shared.db'}",
        model_poll_seconds=3600.0,
    )  # fmt: skip
    registry = connect(settings)
    current = versions.champion(registry, trained.name)
    assert current is not None
    rows = readings(trained, 2, 40)
    first, gap, after = rows[:15], rows[15:24], rows[27:]
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        workers = [a.app.state.runtime.core, b.app.state.runtime.core]  # type: ignore[attr-defined]
        for i, row in enumerate(first):
            assert (a if i % 2 else b).post("/predict", json=body_for(row)).status_code == 200
        other = simulate_fleet(SimulatorConfig(n_assets=24, seed=13))
        outcome = train(other, TrainConfig.model_validate(FAST), trained.settings(),
                        name=trained.name)  # fmt: skip
        assert outcome.version is not None
        versions.promote(registry, trained.name, outcome.version)
        make_scorer = workers[1]._make_scorer

        def make_then_race(*args: Any) -> Any:
            scorer = make_scorer(*args)
            seed = scorer.seed

            def seed_then_race() -> int:
                n = int(seed())
                # While B seeds, B journals a reading on the old model and A, already on the
                # new one, overtakes it: B's replay finds it behind, B seeds again.
                assert b.post("/predict", json=body_for(rows[25])).status_code == 200
                assert a.post("/predict", json=body_for(rows[26])).status_code == 200
                assert workers[0].writer.flush(10)
                scorer.seed = seed
                return n

            scorer.seed = seed_then_race
            return scorer

        workers[1]._make_scorer = make_then_race
        try:
            assert a.portal.call(workers[0].reload)  # type: ignore[union-attr]
            for row in gap:  # B still serves the old model: A's new state misses these
                assert b.post("/predict", json=body_for(row)).status_code == 200
            assert a.post("/predict", json=body_for(rows[24])).status_code == 200
            assert all(w.writer.flush(10) for w in workers)
            with ThreadPoolExecutor(1) as pool:  # B's reload posts from inside its seed
                assert pool.submit(b.portal.call, workers[1].reload).result(120)  # type: ignore[union-attr]
            served = [
                (a if i % 2 else b).post("/predict", json=body_for(row)).json()["prediction"]
                for i, row in enumerate(after)
            ]
            assert {w.model.version for w in workers} == {str(outcome.version)}
            assert workers[1].writer.flush(10)
            loads = [
                e["details"]
                for e in repository.audit_events(workers[1].db)
                if e["action"] == "model_loaded" and e["subject"].endswith(f"/{outcome.version}")
            ]
        finally:
            versions.promote(registry, trained.name, int(current.version))
    alone = trained.settings(
        model_name=trained.name, auth_enabled=False, model_poll_seconds=3600.0,
        database_url=f"sqlite:///{tmp_path / 'alone.db'}",
    )  # fmt: skip
    versions.promote(registry, trained.name, outcome.version)
    try:
        with TestClient(create_app(alone)) as c:
            single = [c.post("/predict", json=body_for(row)).json()["prediction"] for row in rows]
    finally:
        versions.promote(registry, trained.name, int(current.version))
        # The session's model is shared: leave it with the versions it had.
        registry.delete_model_version(trained.name, str(outcome.version))
    assert served == single[-len(served) :]
    # A's swap seeded the asset; B's rebuilt it from the table, then again after its replay.
    late = next(d for d in loads if d["repaired"])
    assert (late["seeded"], late["repaired"]) == (1, 1)
