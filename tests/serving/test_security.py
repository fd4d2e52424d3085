"""API keys and the rate limit: a revocation refused at once by the worker that made it and
within the stated bound by every other; a limit that holds over any 60 s, in process and in
Redis; verified keys that outlive a restart during a database outage (hashes only)."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from prognos.config import Settings, get_settings
from prognos.errors import StorageUnavailableError
from prognos.serving.app import create_app
from prognos.serving.ratelimit import RateLimitedError, RateLimiter
from prognos.serving.security import (
    REVOCATION_BOUND_SECONDS,
    AuthError,
    DatabaseKeys,
    KeyCache,
    KeyFile,
    Principal,
)
from prognos.storage import api_keys
from prognos.storage.api_keys import hash_key
from prognos.storage.database import Database
from tests.helpers.cli import run
from tests.helpers.serving import body_for, readings
from tests.helpers.trained import Trained

# Nothing listens on port 1: connections are refused at once, as for a database that is down.
DATABASE_DOWN = "postgresql+psycopg://postgres@127.0.0.1:1/prognos"


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'keys.db'}")
    database.upgrade()
    yield database
    database.dispose()


def _service(trained: Trained, home: Path, database_url: str) -> Settings:
    """The session's model (from its registry) served from a home of the test's own, so that
    neither the verified-key file nor the spool is shared with other tests."""
    return get_settings(
        home=home,
        mlflow_tracking_uri=trained.settings().tracking_uri,
        model_name=trained.name,
        database_url=database_url,
        compute_process=False,
    )


def _key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


# -- rate limit -----------------------------------------------------------------------------------


def _assert_any_sixty_seconds(limiters: list[RateLimiter], clock: Clock) -> None:
    """Limit 20/min: 20 requests at t=59 s pass, the 20 at t=61 s are refused (a fixed window
    let all 40 through in 2 s), and the limit frees up as the first 20 leave the window."""
    plant = Principal("plant", frozenset({"predict"}), 20)
    clock.now = 59.0
    for i in range(20):
        limiters[i % len(limiters)].hit(plant)
    clock.now = 61.0
    for i in range(20):
        with pytest.raises(RateLimitedError) as refused:
            limiters[i % len(limiters)].hit(plant)
        assert refused.value.retry_after == 58  # the t=59 s requests leave the window at 119 s
    clock.now = 118.5
    with pytest.raises(RateLimitedError) as refused:
        limiters[0].hit(plant)
    assert refused.value.retry_after == 1
    clock.now = 119.0
    for i in range(20):
        limiters[i % len(limiters)].hit(plant)
    with pytest.raises(RateLimitedError):
        limiters[-1].hit(plant)
    # Another key has a count of its own, at the service's default limit.
    other = Principal("other", frozenset({"read"}))
    for _ in range(5):
        limiters[0].hit(other)
    with pytest.raises(RateLimitedError):
        limiters[-1].hit(other)


def test_the_limit_holds_over_any_sixty_seconds_in_process() -> None:
    clock = Clock(0.0)
    _assert_any_sixty_seconds([RateLimiter(5, clock=clock)], clock)


def test_with_redis_unreachable_the_limit_is_kept_in_process() -> None:
    down = redis.Redis(port=1, socket_connect_timeout=0.25, socket_timeout=0.25)
    clock = Clock(0.0)
    _assert_any_sixty_seconds([RateLimiter(5, down, prefix="down", clock=clock)], clock)
    down.close()


@pytest.mark.services
def test_the_limit_holds_over_any_sixty_seconds_across_workers_in_redis(
    redis_url: str, redis_namespace: str
) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    clock = Clock(0.0)
    workers = [RateLimiter(5, c, prefix=redis_namespace, clock=clock) for c in clients]
    _assert_any_sixty_seconds(workers, clock)  # the two workers' requests alternate
    assert clients[0].zcard(f"{redis_namespace}:ratelimit:plant") == 20  # refusals not counted
    for client in clients:
        client.close()


# -- the key cache --------------------------------------------------------------------------------


def test_a_revocation_elsewhere_is_dropped_at_the_next_check(db: Database, tmp_path: Path) -> None:
    key, _ = api_keys.create_api_key(db, "plant", ["predict"])
    cache = KeyCache(DatabaseKeys(db), store=KeyFile(tmp_path / "verified.json"))
    assert cache.check_revocations()  # the first check reads the marker
    assert cache.principal(key).name == "plant" and cache.cached(key) is not None
    assert not cache.check_revocations()  # nothing revoked since
    api_keys.revoke_api_key(db, "plant")
    assert cache.cached(key) is not None  # what the check is for: the cache alone would serve it
    assert cache.check_revocations()
    assert cache.cached(key) is None
    with pytest.raises(AuthError):
        cache.principal(key)
    assert hash_key(key) not in (tmp_path / "verified.json").read_text()


def test_verified_keys_outlive_a_restart_as_hashes_for_a_bounded_time(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "keys" / "verified.json"
    key, _ = api_keys.create_api_key(db, "plant", ["predict", "read"], 30)
    never_used, _ = api_keys.create_api_key(db, "spare", ["read"])
    KeyCache(DatabaseKeys(db), store=KeyFile(path)).principal(key)
    text = path.read_text()
    assert hash_key(key) in text and key not in text and "spare" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    down = Database(DATABASE_DOWN)
    clock = Clock(time.time())
    offline = KeyCache(DatabaseKeys(down), store=KeyFile(path), offline_seconds=3600, clock=clock)
    assert offline.principal(key) == Principal("plant", frozenset({"predict", "read"}), 30)
    with pytest.raises(StorageUnavailableError):  # never verified here: cannot be now
        offline.principal(never_used)
    clock.now += 3601
    later = KeyCache(DatabaseKeys(down), store=KeyFile(path), offline_seconds=3600, clock=clock)
    with pytest.raises(StorageUnavailableError):  # verified too long ago to be trusted offline
        later.principal(key)
    down.dispose()

    # When the database answers it is the truth: a key revoked there is refused and forgotten,
    # at its next use or at the first revocation check after a restart.
    spare_cache = KeyCache(DatabaseKeys(db), store=KeyFile(path))
    spare_cache.principal(never_used)
    api_keys.revoke_api_key(db, "plant")
    api_keys.revoke_api_key(db, "spare")
    back = KeyCache(DatabaseKeys(db), store=KeyFile(path))
    with pytest.raises(AuthError):
        back.principal(key)
    assert hash_key(key) not in path.read_text() and hash_key(never_used) in path.read_text()
    KeyCache(DatabaseKeys(db), store=KeyFile(path)).check_revocations()
    assert hash_key(never_used) not in path.read_text()


@pytest.mark.services
def test_revocations_are_read_from_postgresql(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.upgrade()
    key, _ = api_keys.create_api_key(db, "plant", ["predict"])
    cache = KeyCache(DatabaseKeys(db))
    cache.check_revocations()
    assert cache.principal(key).name == "plant"
    assert not cache.check_revocations()
    api_keys.revoke_api_key(db, "plant")
    assert cache.check_revocations() and cache.cached(key) is None
    with pytest.raises(AuthError):
        cache.principal(key)
    db.dispose()


# -- the service ----------------------------------------------------------------------------------


def _refused_within_bound(client: TestClient, key: str, since: float) -> None:
    """``client`` refuses ``key`` (401) on every request sent later than the bound after ``since``.

    The bound is checked on when each request was sent: a request sent after the bound must be
    refused, one sent before it may still be served (its answer can arrive after the bound on a
    loaded machine without breaking the promise).
    """
    while True:
        sent = time.monotonic() - since
        status = client.get("/assets", headers=_key(key)).status_code
        if status == 401:
            return
        assert status == 200
        if sent > REVOCATION_BOUND_SECONDS:
            pytest.fail(f"revoked key still served on a request sent after {sent:.2f} s")
        time.sleep(0.05)


def test_a_revoked_key_is_refused_at_once_here_and_within_the_bound_by_other_workers(
    trained: Trained, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'service.db'}"
    db = Database(db_url)
    db.upgrade()
    admin = api_keys.create_api_key(db, "ops", ["admin"])[0]
    by_api = api_keys.create_api_key(db, "dashboard", ["read"])[0]
    by_cli = api_keys.create_api_key(db, "plant", ["read"])[0]
    db.dispose()
    settings = _service(trained, tmp_path / "home", db_url)
    # Two service instances on one database, as two workers (or replicas) are.
    with TestClient(create_app(settings)) as here, TestClient(create_app(settings)) as there:
        for client in (here, there):
            for key in (by_api, by_cli):
                assert client.get("/assets", headers=_key(key)).status_code == 200  # cached
        assert here.delete("/keys/ghost", headers=_key(admin)).status_code == 404
        assert here.delete("/keys/ops", headers=_key(by_api)).status_code == 403

        since = time.monotonic()
        response = here.delete("/keys/dashboard", headers=_key(admin))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == "dashboard" and body["revoked_at"]
        assert body["refused_within_seconds"] == REVOCATION_BOUND_SECONDS
        assert here.get("/assets", headers=_key(by_api)).status_code == 401  # at once
        _refused_within_bound(there, by_api, since)

        since = time.monotonic()
        revoked = run(
            "keys", "revoke", "plant", "--home", tmp_path / "cli",
            env={"PROGNOS_DATABASE_URL": db_url},
        )  # fmt: skip
        assert revoked.exit_code == 0, revoked.output
        assert f"within {REVOCATION_BOUND_SECONDS:g} s" in revoked.stdout
        for client in (here, there):
            _refused_within_bound(client, by_cli, since)
        assert here.get("/assets", headers=_key(admin)).status_code == 200
    verified = (tmp_path / "home" / "keys" / "verified.json").read_text()
    assert hash_key(admin) in verified
    assert hash_key(by_api) not in verified and hash_key(by_cli) not in verified


def test_a_service_started_while_the_database_is_away_serves_known_keys(
    trained: Trained, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'service.db'}"
    db = Database(db_url)
    db.upgrade()
    known = api_keys.create_api_key(db, "plant", ["predict"])[0]
    never_used = api_keys.create_api_key(db, "spare", ["predict"])[0]
    db.dispose()
    home = tmp_path / "home"
    first, second = readings(trained, 4, 2)
    with TestClient(create_app(_service(trained, home, db_url))) as client:
        response = client.post("/predict", json=body_for(first), headers=_key(known))
        assert response.status_code == 200, response.text

    # Restarted with the database unreachable (the same file is now behind a dead address).
    with TestClient(create_app(_service(trained, home, DATABASE_DOWN))) as client:
        # The key is known, with its scopes: authenticated, then refused a scope it lacks.
        response = client.get("/assets", headers=_key(known))
        assert response.status_code == 403, response.text
        assert "'plant' lacks the 'read' scope" in response.json()["detail"]
        # Whatever the model answers without its stored history, it is not an auth failure.
        response = client.post("/predict", json=body_for(second), headers=_key(known))
        assert response.status_code != 401 and "API key" not in response.text, response.text
        for key in (never_used, "pk_" + "x" * 43):  # neither can be verified now: 503, and why
            refused = client.post("/predict", json=body_for(second), headers=_key(key))
            assert refused.status_code == 503, refused.text
            assert "unavailable while verifying an API key" in refused.json()["detail"]
