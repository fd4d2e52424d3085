"""API keys with scopes: verification, caching and revocation.

Keys are verified against their stored hash in the database, then cached for ``CACHE_SECONDS``:
the hot path does not touch the database. Revocation does not wait for the cache: the worker
that revokes (``DELETE /keys/{name}``) drops the key at once, and every worker reads a cheap
revocation marker every ``REVOCATION_CHECK_SECONDS`` off the event loop, so a key revoked
anywhere (CLI, another worker) is refused within ``REVOCATION_BOUND_SECONDS``.

Verified keys are also kept, as SHA-256 hashes only, in a file under the home (:class:`KeyFile`)
that outlives restarts: used only when the database cannot be reached, for at most
``key_cache_offline_seconds`` after the key was verified, so that a service started during a
database outage keeps serving known keys.

The rate limit per key is in ``ratelimit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prognos.errors import PrognosError, StorageUnavailableError
from prognos.storage import api_keys
from prognos.storage.api_keys import hash_key

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.storage.database import Database

log = logging.getLogger("prognos.serving")

SCOPES = ("read", "predict", "ingest", "admin")
CACHE_SECONDS = 60.0
# How often each worker reads the revocation marker, and the refusal bound that follows from it
# (one interval plus the query, with room for a busy loop).
REVOCATION_CHECK_SECONDS = 1.0
REVOCATION_BOUND_SECONDS = 2.0


class AuthError(PrognosError):
    """Missing or unknown API key (HTTP 401)."""


class ForbiddenError(PrognosError):
    """A valid key without the scope the endpoint needs (HTTP 403)."""


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


@dataclass(frozen=True)
class VerifiedKey:
    """A key the database accepted, and when (seconds since the epoch)."""

    principal: Principal
    verified_at: float


class DatabaseKeys:
    """Where keys are the truth: the ``api_keys`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def verify(self, key: str) -> Principal | None:
        info = api_keys.verify_api_key(self._db, key)
        if info is None:
            return None
        return Principal(info.name, frozenset(info.scopes), info.rate_limit_per_minute)

    def marker(self) -> Hashable:
        return api_keys.api_key_revocations(self._db)

    def revoked(self) -> set[str]:
        return api_keys.revoked_api_key_hashes(self._db)


class KeyFile:
    """Verified keys by SHA-256 hash (never the keys) in a JSON file that outlives restarts.

    Written atomically (temporary file, then ``os.replace``; mode 0600) and merged under a lock
    file, so several workers sharing a home update it without losing each other's entries.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, VerifiedKey]:
        try:
            raw = json.loads(self.path.read_text())
            return {h: _entry(e) for h, e in raw["keys"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable verified-key cache %s: %s", self.path, exc)
            return {}

    def update(self, upserts: Mapping[str, VerifiedKey], removals: set[str]) -> None:
        """Apply upserts and removals to what is on disk now; a failure is logged, not raised
        (the cache only matters during an outage)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                entries = self.load()
                entries.update(upserts)
                for removed in removals:
                    entries.pop(removed, None)
                self._write({h: _record(e) for h, e in entries.items()})
            finally:
                os.close(lock)  # releases the lock
        except OSError as exc:
            log.warning("cannot write the verified-key cache %s: %s", self.path, exc)

    def _write(self, keys: dict[str, dict[str, Any]]) -> None:
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".verified-")  # mode 0600
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"version": 1, "keys": keys}, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def _record(entry: VerifiedKey) -> dict[str, Any]:
    p = entry.principal
    return {
        "name": p.name,
        "scopes": sorted(p.scopes),
        "rate_limit_per_minute": p.rate_limit_per_minute,
        "verified_at": datetime.fromtimestamp(entry.verified_at, UTC).isoformat(),
    }


def _entry(record: dict[str, Any]) -> VerifiedKey:
    limit = record["rate_limit_per_minute"]
    principal = Principal(
        str(record["name"]), frozenset(record["scopes"]), None if limit is None else int(limit)
    )
    return VerifiedKey(principal, datetime.fromisoformat(record["verified_at"]).timestamp())


class KeyCache:
    """Verified keys by hash: cached ``ttl`` seconds, dropped on revocation, and remembered
    (in ``store``) for use while the database is away."""

    def __init__(
        self,
        source: DatabaseKeys,
        *,
        store: KeyFile | None = None,
        offline_seconds: float = 86_400.0,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._store = store
        self._offline_seconds = offline_seconds
        # A stored verification is refreshed this often, not on every re-verification: it can
        # only make the offline use shorter than stated, never longer.
        self._refresh = min(3600.0, offline_seconds / 10)
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._known: dict[str, VerifiedKey] = store.load() if store is not None else {}
        self._generation = 0  # bumped by every drop: a verification racing it is not cached
        self._marker: Hashable | None = None
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def cached(self, key: str) -> Principal | None:
        """The principal from the cache alone (None: not cached or stale): no I/O, for the loop."""
        entry = self._entries.get(hash_key(key))
        if entry is None or time.monotonic() - entry[0] >= self._ttl:
            return None
        if entry[1] is None:
            raise AuthError("unknown or revoked API key")
        return entry[1]

    def principal(self, key: str) -> Principal:
        """Verify (cached), consulting the database when needed: call it off the event loop."""
        hashed = hash_key(key)
        now = time.monotonic()
        cached = self._entries.get(hashed)
        if cached is not None and now - cached[0] < self._ttl:
            found = cached[1]
        else:
            generation = self._generation
            try:
                found = self._source.verify(key)
            except StorageUnavailableError:
                # Database away: a key verified recently enough keeps working; any other cannot
                # be verified, and the error (503) says why.
                known = self._known.get(hashed)
                if known is None:
                    raise
                left = known.verified_at + self._offline_seconds - self._clock()
                if left < 0:
                    raise
                found, now = known.principal, now - max(0.0, self._ttl - left)  # cached <= left
            else:
                self._learn(hashed, found, generation)
            with self._lock:
                if generation == self._generation:
                    self._entries[hashed] = (now, found)
                    if len(self._entries) > 10_000:
                        self._entries.pop(next(iter(self._entries)))
        if found is None:
            raise AuthError("unknown or revoked API key")
        return found

    def _learn(self, hashed: str, found: Principal | None, generation: int) -> None:
        """Bring the offline memory in line with what the database just said."""
        known = self._known.get(hashed)
        now = self._clock()
        if found is None:
            if known is not None:
                self._drop({hashed})
            return
        if (
            known is not None
            and known.principal == found
            and now - known.verified_at < self._refresh
        ):
            return
        with self._lock:
            if generation != self._generation:
                return  # dropped (revoked) while the database was being asked
            entry = VerifiedKey(found, now)
            self._known[hashed] = entry
            if self._store is not None:
                self._store.update({hashed: entry}, set())

    def forget(self, name: str) -> None:
        """Drop the key named ``name`` at once (it was revoked here)."""
        with self._lock:
            hashes = {h for h, e in self._entries.items() if e[1] is not None and e[1].name == name}
            hashes |= {h for h, e in self._known.items() if e.principal.name == name}
        self._drop(hashes)

    def _drop(self, hashes: set[str]) -> None:
        with self._lock:
            self._generation += 1
            for hashed in hashes:
                self._entries.pop(hashed, None)
            removed = {h for h in hashes if self._known.pop(h, None) is not None}
            if removed and self._store is not None:
                self._store.update({}, removed)

    def check_revocations(self) -> bool:
        """Drop keys revoked since the last check (the first check drops every revoked key the
        store remembers); True when the marker moved. Blocking: off the event loop."""
        marker = self._source.marker()
        if marker == self._marker:
            return False
        revoked = self._source.revoked()
        with self._lock:
            hashes = revoked & (self._entries.keys() | self._known.keys())
        self._drop(hashes)
        self._marker = marker
        return True

    def start(self, interval: float = REVOCATION_CHECK_SECONDS) -> None:
        """Check for revocations every ``interval`` seconds (on the running loop, until stop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._watch(interval), name="prognos-key-revocations"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self, interval: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check_revocations)
            except PrognosError as exc:  # database away: its revocations are seen on return
                log.debug("revocation check failed: %s", exc)
            except Exception:  # a bug must not end the checks (revocations would go unseen)
                log.exception("revocation check failed")
            await asyncio.sleep(interval)


def key_cache(settings: Settings, db: Database) -> KeyCache:
    """The service's key cache, remembering verified keys in ``HOME/keys/verified.json`` unless
    offline use is off (``key_cache_offline_seconds`` 0)."""
    offline = settings.key_cache_offline_seconds
    store = KeyFile(settings.home / "keys" / "verified.json") if offline > 0 else None
    return KeyCache(DatabaseKeys(db), store=store, offline_seconds=offline)
