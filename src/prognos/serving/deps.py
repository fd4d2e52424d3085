"""FastAPI dependencies: the runtime, and the caller's key checked for a scope and rate-limited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from prognos.serving.runtime import Runtime
from prognos.serving.security import ANONYMOUS, AuthError, Principal

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


async def get_runtime(request: Request) -> Runtime:
    """``async`` on purpose: FastAPI runs plain ``def`` dependencies in its thread pool, a thread
    hop (and GIL hand-off) per request for what is one attribute read."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def authenticate(runtime: Runtime, key: str | None, scope: str) -> Principal:
    """The key's principal once it holds ``scope``, the request counted against its limit
    (what every scoped dependency does; ``/predict``'s own route calls it directly)."""
    if not runtime.settings.auth_enabled:
        return ANONYMOUS  # the local demo: no keys, so nothing to rate-limit per key
    if not key:
        raise AuthError("missing API key: send it in the X-API-Key header")
    assert runtime.keys is not None
    principal = runtime.keys.cached(key)
    if principal is None:
        principal = await run_in_threadpool(runtime.keys.principal, key)
    principal.require(scope)
    assert runtime.limiter is not None
    runtime.limiter.hit(principal)
    return principal


def scoped(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the key, checks ``scope`` and counts the request."""

    async def dependency(
        request: Request, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Principal:
        return await authenticate(request.app.state.runtime, key, scope)

    return dependency


def authorized(scope: str) -> Callable[..., Awaitable[Runtime]]:
    """Like :func:`scoped`, but answers the runtime: the hot endpoints' one dependency.

    FastAPI resolves every dependency of a request anew (cache keys, generator checks), ~20 µs
    each on this machine: ``/predict`` had five (itself, the runtime twice, the key check, the
    key header), now three.
    """

    async def dependency(
        request: Request, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Runtime:
        runtime: Runtime = request.app.state.runtime
        await authenticate(runtime, key, scope)
        return runtime

    return dependency


Reader = Annotated[Principal, Depends(scoped("read"))]
Forecaster = Annotated[Principal, Depends(scoped("predict"))]
Ingester = Annotated[Principal, Depends(scoped("ingest"))]
Admin = Annotated[Principal, Depends(scoped("admin"))]
# The runtime, for a key with the scope (``/predict`` and ``/batch-predict``).
Forecast = Annotated[Runtime, Depends(authorized("predict"))]
