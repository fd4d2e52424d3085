"""Where online feature state lives: in process by default, Redis when a URL is configured.

Both stores offer one atomic read-modify-write, ``update``, so two workers or replicas feeding the
same asset never lose a reading: Redis does it optimistically with a compare-and-set script.

A Redis server can lose its data (restarted without persistence, flushed, failed over to an empty
replica) and come back answering as if nothing happened: every asset would then silently restart
from its next reading. So a seeded Redis store carries a *generation*: a random token written
under ``<namespace>:generation`` once the states are rebuilt from the stored readings. Each
process remembers the token it seeded or adopted; every compare-and-set and every read checks it
in the same round trip, and a missing or different token raises :class:`StateStoreLostError`
instead of reading or writing a state, until the state has been rebuilt (see ``begin_seed``).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import redis

from prognos.errors import PrognosError, StateStoreError, StateStoreLostError

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.features.asset_state import AssetState

T = TypeVar("T")
Advance = Callable[["AssetState | None"], "tuple[AssetState, T]"]


class StateStore(Protocol):
    """Per-asset online feature state keyed by the asset id (as a string)."""

    def get(self, asset_id: str) -> AssetState | None: ...

    def get_many(self, asset_ids: list[str]) -> list[AssetState | None]:
        """States of many assets in one go (one round trip for Redis)."""
        ...

    def update(self, asset_id: str, advance: Advance[T]) -> T:
        """Atomically load the state, apply ``advance`` and save the new state; return its result.

        If ``advance`` raises, nothing is saved.
        """
        ...

    def delete(self, asset_id: str) -> None: ...

    def assets(self) -> list[str]: ...

    def ping(self) -> bool: ...

    def begin_seed(self) -> None:
        """States are about to be rebuilt from the stored readings (see ``finish_seed``)."""
        ...

    def finish_seed(self) -> None:
        """The states are rebuilt: from now on, notice if the store loses them."""
        ...

    def resume(self) -> bool:
        """Adopt the states already in the store, without rebuilding them, when they are known
        to be whole (another process seeded them and the store has not lost them since)."""
        ...


class MemoryStateStore:
    """In-process state: the embedded default (one process, any number of threads)."""

    def __init__(self) -> None:
        self._states: dict[str, AssetState] = {}
        self._lock = threading.Lock()

    def get(self, asset_id: str) -> AssetState | None:
        return self._states.get(asset_id)

    def get_many(self, asset_ids: list[str]) -> list[AssetState | None]:
        return [self._states.get(a) for a in asset_ids]

    def update(self, asset_id: str, advance: Advance[T]) -> T:
        with self._lock:
            current = self._states.get(asset_id)
            # ``advance`` may mutate in place: hand it a copy, so that a rejection part-way leaves
            # the stored state exactly as it was.
            state, result = advance(None if current is None else current.copy())
            self._states[asset_id] = state
            return result

    def delete(self, asset_id: str) -> None:
        with self._lock:
            self._states.pop(asset_id, None)

    def assets(self) -> list[str]:
        return list(self._states)

    def ping(self) -> bool:
        return True

    def begin_seed(self) -> None:
        pass

    def finish_seed(self) -> None:
        pass

    def resume(self) -> bool:
        return False  # a new process's memory holds nothing: always rebuild


# Optimistic concurrency in two round trips (GET, then this script) instead of WATCH/MULTI's
# three: the state's header (count, last time, ring head) changes with every accepted reading, so
# it identifies the version that was read.
# KEYS[2] is the generation key; ARGV[3] the generation this process holds ('' while seeding, or
# for a store used without one): -1 when the store lost the states this process relies on.
_VERSION_BYTES = 24
_COMPARE_AND_SET = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return -1
end
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or
   (current ~= false and string.sub(current, 1, 24) == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisStateStore:
    """State in Redis, shared by every worker and replica that points at the same server."""

    def __init__(
        self,
        url: str,
        *,
        decode: Callable[[bytes], AssetState],
        namespace: str = "prognos",
        timeout: float = 1.0,
        remember: int = 10_000,
    ) -> None:
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._decode = decode
        self._prefix = f"{namespace}:state:"
        self._generation_key = f"{namespace}:generation"
        self._generation: bytes | None = None  # the token this process seeded or adopted
        self._is_lost = False  # set when the generation vanished; cleared by a new seed
        self._compare_and_set = self._client.register_script(_COMPARE_AND_SET)
        # The last state this process wrote per asset: when nobody else wrote since, an update
        # needs no GET (one round trip). A stale copy fails the compare-and-set and is refreshed,
        # so it can never make two workers diverge.
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._remember_max = remember
        self._recent_lock = threading.Lock()

    def _key(self, asset_id: str) -> str:
        return self._prefix + asset_id

    def get(self, asset_id: str) -> AssetState | None:
        return self.get_many([asset_id])[0]

    def get_many(self, asset_ids: list[str]) -> list[AssetState | None]:
        if not asset_ids:
            return []
        if self._is_lost:
            self._lost()
        keys = [self._key(a) for a in asset_ids]
        try:
            # The generation comes in the same MGET: one round trip, one snapshot.
            generation, *raws = self._client.mget([self._generation_key, *keys])
        except redis.RedisError as exc:
            raise StateStoreError(
                f"Redis unavailable reading {len(asset_ids)} states: {exc}"
            ) from exc
        if self._generation is not None and generation != self._generation:
            self._lost()
        return [None if raw is None else self._decode(raw) for raw in raws]

    def _lost(self) -> None:
        self._is_lost = True  # every later call fails too, until the states are rebuilt
        with self._recent_lock:
            self._recent.clear()
        raise StateStoreLostError(
            "the Redis state store lost the online state (restarted empty or flushed); it is "
            "being rebuilt from the stored readings"
        )

    def begin_seed(self) -> None:
        # While rebuilding, writes are not checked against a generation: there is none yet.
        self._generation, self._is_lost = None, False

    def finish_seed(self) -> None:
        token = uuid.uuid4().hex.encode()
        try:
            # The first process to finish a seed sets the generation; the others adopt it.
            self._client.set(self._generation_key, token, nx=True)
            current = self._client.get(self._generation_key)
        except redis.RedisError as exc:
            raise StateStoreError(f"Redis unavailable recording the seed: {exc}") from exc
        self._generation = current if current is not None else token

    def resume(self) -> bool:
        try:
            current = self._client.get(self._generation_key)
        except redis.RedisError as exc:
            raise StateStoreError(f"Redis unavailable reading its generation: {exc}") from exc
        if current is None:
            return False
        self._generation, self._is_lost = current, False
        return True

    def update(self, asset_id: str, advance: Advance[T]) -> T:
        if self._is_lost:
            self._lost()
        key = self._key(asset_id)
        try:
            raw = self._recent.get(key)
            verified = raw is None
            if raw is None:
                raw = self._client.get(key)
            while True:
                try:
                    state, result = advance(None if raw is None else self._decode(raw))
                except PrognosError:
                    if verified:
                        raise
                    # Judged on our remembered copy, which may be stale: judge again on fresh state.
                    raw, verified = self._client.get(key), True
                    continue
                new = state.to_bytes()
                expected = b"" if raw is None else raw[:_VERSION_BYTES]
                done = self._compare_and_set(
                    keys=[key, self._generation_key],
                    args=[expected, new, self._generation or b""],
                )
                if done == -1:
                    self._lost()
                if done:
                    self._remember(key, new)
                    return result
                # Another writer updated this asset since our copy: retry on fresh state.
                raw, verified = self._client.get(key), True
        except redis.RedisError as exc:
            self._recent.pop(key, None)
            raise StateStoreError(f"Redis unavailable updating state of {asset_id}: {exc}") from exc

    def _remember(self, key: str, raw: bytes) -> None:
        with self._recent_lock:
            self._recent[key] = raw
            self._recent.move_to_end(key)
            if len(self._recent) > self._remember_max:
                self._recent.popitem(last=False)

    def delete(self, asset_id: str) -> None:
        self._recent.pop(self._key(asset_id), None)
        try:
            self._client.delete(self._key(asset_id))
        except redis.RedisError as exc:
            raise StateStoreError(f"Redis unavailable deleting state of {asset_id}: {exc}") from exc

    def assets(self) -> list[str]:
        try:
            return [
                k.decode()[len(self._prefix) :]
                for k in self._client.scan_iter(match=self._prefix + "*", count=1000)
            ]
        except redis.RedisError as exc:
            raise StateStoreError(f"Redis unavailable listing assets: {exc}") from exc

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()


def make_state_store(
    settings: Settings, *, decode: Callable[[bytes], AssetState], fingerprint: str
) -> StateStore:
    """Redis when ``PROGNOS_REDIS_URL`` is set, in process otherwise.

    ``fingerprint`` identifies the feature layout: a pipeline with different channels or windows
    gets its own keys rather than misreading another one's state.
    """
    if settings.redis_url is None:
        return MemoryStateStore()
    return RedisStateStore(
        settings.redis_url.get_secret_value(),
        decode=decode,
        namespace=f"{settings.redis_namespace}:{fingerprint}",
    )
