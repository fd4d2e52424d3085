"""Dashboard sessions: an API key, checked once at sign-in, exchanged for a random session id.

The cookie carries only that id (HttpOnly, SameSite=Strict, Secure over https); what it stands
for (the key's name, scopes and hash, a CSRF token, the expiry) stays on the server, never the
key. In process by default; in Redis when the service has one (``PROGNOS_REDIS_URL``, which
``--workers`` > 1 requires), so a session opened on one worker is valid on every other worker
and survives a restart. A session ends at its expiry, at sign-out, or within
``REVOCATION_CHECK_SECONDS`` of its key being revoked anywhere.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prognos.serving.security import Principal

COOKIE = "prognos_session"
LOGIN_COOKIE = "prognos_login_csrf"  # the sign-in form's own CSRF token (no session yet)
COOKIE_PATH = "/ui"
REVOCATION_CHECK_SECONDS = 1.0
_MAX_MEMORY_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    """Who is signed in: the key's principal and hash (to notice a revocation), the CSRF token
    of every form of this session, and when it ends (seconds since the epoch)."""

    principal: Principal
    key_hash: str
    csrf: str
    expires_at: float

    def can(self, scope: str) -> bool:
        return scope in self.principal.scopes or "admin" in self.principal.scopes

    def to_json(self) -> str:
        p = self.principal
        return json.dumps(
            {
                "name": p.name,
                "scopes": sorted(p.scopes),
                "rate": p.rate_limit_per_minute,
                "key_hash": self.key_hash,
                "csrf": self.csrf,
                "expires_at": self.expires_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Session:
        d = json.loads(raw)
        principal = Principal(str(d["name"]), frozenset(d["scopes"]), d["rate"])
        return cls(principal, str(d["key_hash"]), str(d["csrf"]), float(d["expires_at"]))


class SessionBackend(Protocol):
    def put(self, token_hash: str, session: Session, ttl: float) -> None: ...
    def get(self, token_hash: str) -> Session | None: ...
    def delete(self, token_hash: str) -> None: ...


class MemoryBackend:
    """Sessions of this process (one worker): lost at restart."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def put(self, token_hash: str, session: Session, ttl: float) -> None:
        with self._lock:
            if len(self._sessions) >= _MAX_MEMORY_SESSIONS:
                now = self._clock()
                self._sessions = {h: s for h, s in self._sessions.items() if s.expires_at > now}
                if len(self._sessions) >= _MAX_MEMORY_SESSIONS:  # all live: drop the oldest
                    self._sessions.pop(next(iter(self._sessions)))
            self._sessions[token_hash] = session

    def get(self, token_hash: str) -> Session | None:
        return self._sessions.get(token_hash)

    def delete(self, token_hash: str) -> None:
        with self._lock:
            self._sessions.pop(token_hash, None)


class RedisBackend:
    """Sessions shared by every worker and replica using one Redis, expiring with their TTL."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._prefix = f"{namespace}:ui:session:"

    def put(self, token_hash: str, session: Session, ttl: float) -> None:
        self._client.set(self._prefix + token_hash, session.to_json(), ex=max(1, int(ttl)))

    def get(self, token_hash: str) -> Session | None:
        raw = self._client.get(self._prefix + token_hash)
        return None if raw is None else Session.from_json(raw)

    def delete(self, token_hash: str) -> None:
        self._client.delete(self._prefix + token_hash)


class SessionStore:
    """Opens, finds and closes sessions; ``revoked`` gives the hashes of revoked keys (read at
    most once per :data:`REVOCATION_CHECK_SECONDS`, so a revoked key's sessions end with it)."""

    def __init__(
        self,
        backend: SessionBackend,
        lifetime_seconds: float,
        revoked: Callable[[], set[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.lifetime = lifetime_seconds
        self._revoked_source = revoked
        self._revoked: set[str] = set()
        self._revoked_at = -float("inf")
        self._clock = clock

    @staticmethod
    def _hash(token: str) -> str:
        # Stored under the token's hash: a leaked store (a Redis dump) opens no session.
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, principal: Principal, key_hash: str) -> tuple[str, Session]:
        """A new session for ``principal``: the cookie's token and the session."""
        token = secrets.token_urlsafe(32)
        session = Session(
            principal, key_hash, secrets.token_urlsafe(32), self._clock() + self.lifetime
        )
        self.backend.put(self._hash(token), session, self.lifetime)
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session ``token`` names; None when unknown, expired or its key revoked."""
        if not token or len(token) > 100:
            return None
        hashed = self._hash(token)
        session = self.backend.get(hashed)
        if session is None:
            return None
        if session.expires_at <= self._clock() or session.key_hash in self._revoked_keys():
            self.backend.delete(hashed)
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self.backend.delete(self._hash(token))

    def _revoked_keys(self) -> set[str]:
        now = time.monotonic()
        if now - self._revoked_at >= REVOCATION_CHECK_SECONDS:
            self._revoked = self._revoked_source()
            self._revoked_at = now
        return self._revoked
