"""DELETE /keys/{name}: revoke an API key from the service, effective at once."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from prognos.errors import ConfigError, NotFoundError
from prognos.serving.deps import Admin, RuntimeDep
from prognos.serving.schemas import KeyRevokedOut
from prognos.serving.security import REVOCATION_BOUND_SECONDS
from prognos.storage import api_keys

router = APIRouter(tags=["keys"])


@router.delete("/keys/{name}", response_model=KeyRevokedOut)
async def revoke_key(name: str, runtime: RuntimeDep, principal: Admin) -> KeyRevokedOut:
    """Revoke the key named ``name`` (audited; revoking it again changes nothing).

    This worker refuses the key from the response on; the other workers and replicas read the
    revocation from the database within ``refused_within_seconds``.
    """
    assert runtime.core.db is not None and runtime.keys is not None
    try:
        info = await run_in_threadpool(
            api_keys.revoke_api_key, runtime.core.db, name, actor=f"api:{principal.name}"
        )
    except ConfigError as exc:  # the one thing revoke_api_key refuses: an unknown name
        raise NotFoundError(str(exc)) from exc
    await run_in_threadpool(runtime.keys.forget, name)  # also rewrites the verified-key file
    assert info.revoked_at is not None
    return KeyRevokedOut(
        name=info.name, revoked_at=info.revoked_at, refused_within_seconds=REVOCATION_BOUND_SECONDS
    )
