"""API keys with scopes, and a rate limit per key.

Keys are verified against their stored hash in the database once, then cached for
``CACHE_SECONDS``: the hot path does not touch the database, and predictions keep being served for
known keys while the database is away (revocation takes effect within the cache time).

The rate limit is a fixed one-minute window per key: in Redis when configured, so that every
worker and replica counts together; in process otherwise, and also while Redis is unreachable (a
limiter that fails closed would turn a Redis outage into a full outage).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from prognos.errors import PrognosError

SCOPES = ("read", "predict", "ingest", "admin")
CACHE_SECONDS = 60.0


class AuthError(PrognosError):
    """Missing or unknown API key (HTTP 401)."""


class ForbiddenError(PrognosError):
    """A valid key without the scope the endpoint needs (HTTP 403)."""


class RateLimitedError(PrognosError):
    """Too many requests for this key in the current window (HTTP 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name, scopes and rate limit (never the key itself)."""

    name: str
    scopes: frozenset[str]
    rate_limit_per_minute: int | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise ForbiddenError(f"API key {self.name!r} lacks the {scope!r} scope")


ANONYMOUS = Principal(name="anonymous", scopes=frozenset(SCOPES))


class KeyCache:
    """Verified keys by hash, refreshed from the database every ``ttl`` seconds."""

    def __init__(
        self, verify: Callable[[str], Principal | None], *, ttl: float = CACHE_SECONDS
    ) -> None:
        self._verify = verify
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> Principal | None:
        """The principal from the cache alone (None: not cached or stale): no I/O, for the loop."""
        entry = self._entries.get(hashlib.sha256(key.encode()).hexdigest())
        if entry is None or time.monotonic() - entry[0] >= self._ttl:
            return None
        if entry[1] is None:
            raise AuthError("unknown or revoked API key")
        return entry[1]

    def principal(self, key: str) -> Principal:
        """Verify (cached), consulting the database when needed: call it off the event loop."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            found = cached[1]
        else:
            try:
                found = self._verify(key)
            except PrognosError:
                # Database away: known keys keep working on their last verification.
                if cached is None:
                    raise
                found = cached[1]
            with self._lock:
                self._entries[digest] = (now, found)
                if len(self._entries) > 10_000:
                    self._entries.pop(next(iter(self._entries)))
        if found is None:
            raise AuthError("unknown or revoked API key")
        return found


class RateLimiter:
    """Fixed one-minute windows per key; Redis-backed when a client is given."""

    def __init__(
        self, default_per_minute: int, client: Any | None = None, prefix: str = ""
    ) -> None:
        self.default = default_per_minute
        self._client = client
        self._prefix = f"{prefix}:ratelimit:"
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._redis_down_until = 0.0

    def hit(self, principal: Principal) -> None:
        limit = principal.rate_limit_per_minute or self.default
        now = time.time()
        window = int(now // 60)
        retry_after = max(1, int(60 - now % 60))
        count = self._count(principal.name, window)
        if count > limit:
            raise RateLimitedError(
                f"rate limit of {limit} requests per minute exceeded for {principal.name!r}",
                retry_after=retry_after,
            )

    def _count(self, name: str, window: int) -> int:
        if self._client is not None and time.monotonic() >= self._redis_down_until:
            key = f"{self._prefix}{name}:{window}"
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.incr(key)
                pipe.expire(key, 120)
                return int(pipe.execute()[0])
            except redis.RedisError:
                # Counted in process meanwhile; Redis is tried again in a few seconds rather than
                # on every request (each try would cost its timeout).
                self._redis_down_until = time.monotonic() + 5.0
        with self._lock:
            if len(self._counts) > 50_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            count = self._counts.get((name, window), 0) + 1
            self._counts[(name, window)] = count
            return count
