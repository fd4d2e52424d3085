"""A rate limit per API key that holds over any 60 s: a sliding log, not calendar minutes.

In Redis when configured (one Lua script, so every worker and replica counts together); in
process otherwise, and also while Redis is unreachable (a limiter that fails closed would turn a
Redis outage into a full outage). Written by hand rather than with ``limits``: that library reads
its clock internally (the boundary tests need an injected one) and its Redis extra pins redis<8.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from prognos.errors import PrognosError
from prognos.serving.security import Principal

RATE_WINDOW_SECONDS = 60.0


class RateLimitedError(PrognosError):
    """Too many requests for this key in the last minute (HTTP 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Sliding log in a sorted set: drop what left the window, count, add when under the limit. When
# full, answers the seconds until the oldest entry that frees a slot leaves the window.
_SLIDING_LOG = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return ''
end
local freeing = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return tostring(tonumber(freeing[2]) + window - now)
"""


class RateLimiter:
    """At most a key's limit in any ``RATE_WINDOW_SECONDS``; Redis-backed when a client is
    given. Refused requests are not counted, so a client that waits ``Retry-After`` gets in."""

    def __init__(
        self,
        default_per_minute: int,
        client: Any | None = None,
        prefix: str = "",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.default = default_per_minute
        self._client = client
        self._script = client.register_script(_SLIDING_LOG) if client is not None else None
        self._prefix = f"{prefix}:ratelimit:"
        self._clock = clock  # wall clock: workers on several hosts share the Redis log
        self._logs: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._redis_down_until = 0.0

    def hit(self, principal: Principal) -> None:
        limit = principal.rate_limit_per_minute or self.default
        wait = self._wait(principal.name, limit, self._clock())
        if wait is not None:
            raise RateLimitedError(
                f"rate limit of {limit} requests per minute exceeded for {principal.name!r}",
                retry_after=max(1, math.ceil(wait)),
            )

    def _wait(self, name: str, limit: int, now: float) -> float | None:
        """Record a request; None when allowed, else seconds until one would be."""
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            member = secrets.token_hex(8)
            args = [repr(now), repr(RATE_WINDOW_SECONDS), limit, member]
            try:
                answer = self._script(keys=[f"{self._prefix}{name}"], args=args)
            except redis.RedisError:
                # Counted in process meanwhile; Redis is tried again in a few seconds rather than
                # on every request (each try would cost its timeout).
                self._redis_down_until = time.monotonic() + 5.0
            else:
                return float(answer) if answer else None
        horizon = now - RATE_WINDOW_SECONDS
        with self._lock:
            if len(self._logs) > 50_000:
                self._logs = {k: v for k, v in self._logs.items() if v and v[-1] > horizon}
            entries = self._logs.setdefault(name, deque())
            while entries and entries[0] <= horizon:
                entries.popleft()
            if len(entries) < limit:
                entries.append(now)
                return None
            return entries[len(entries) - limit] + RATE_WINDOW_SECONDS - now
