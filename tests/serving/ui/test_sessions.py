"""Dashboard sessions: found by their token only, ended by expiry, sign-out and revocation of
their key, and shared by every worker through Redis."""

from __future__ import annotations

import pytest

from prognos.serving.security import Principal
from prognos.serving.ui.sessions import (
    REVOCATION_CHECK_SECONDS,
    MemoryBackend,
    RedisBackend,
    Session,
    SessionStore,
)

ANNA = Principal("anna", frozenset({"read", "ingest"}), 50)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_found_by_its_token_until_it_expires() -> None:
    clock, revoked = Clock(), set[str]()
    store = SessionStore(MemoryBackend(clock), 3600, lambda: revoked, clock)
    token, session = store.open(ANNA, "hash-a")
    assert store.find(token) == session and session.can("ingest") and not session.can("admin")
    assert store.find(token + "x") is None and store.find(None) is None
    assert token not in session.to_json()  # the store keeps the token's hash, not the token
    clock.now += 3599
    assert store.find(token) == session
    clock.now += 2
    assert store.find(token) is None


def test_sign_out_and_a_revoked_key_end_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    revoked: set[str] = set()
    store = SessionStore(MemoryBackend(), 3600, lambda: set(revoked))
    token, _ = store.open(ANNA, "hash-a")
    other, _ = store.open(ANNA, "hash-a")
    store.close(token)
    assert store.find(token) is None and store.find(other) is not None
    revoked.add("hash-a")
    monkeypatch.setattr("time.monotonic", lambda: 1e12)  # past the next revocation check
    assert REVOCATION_CHECK_SECONDS <= 1.0
    assert store.find(other) is None


def test_the_session_round_trips_as_json() -> None:
    session = Session(ANNA, "hash-a", "csrf", 123.5)
    assert Session.from_json(session.to_json()) == session


@pytest.mark.services
def test_sessions_in_redis_are_shared_by_workers(redis_url: str, redis_namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        one = SessionStore(RedisBackend(client, redis_namespace), 60, set)
        two = SessionStore(RedisBackend(client, redis_namespace), 60, set)
        token, session = one.open(ANNA, "hash-a")
        assert two.find(token) == session  # another worker knows it
        [key] = client.keys(f"{redis_namespace}:ui:session:*")
        assert token.encode() not in key and 0 < client.ttl(key) <= 60
        two.close(token)
        assert one.find(token) is None
    finally:
        client.close()
