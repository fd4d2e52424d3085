"""API keys: created once (the plaintext is shown only then), stored as SHA-256 hashes with
scopes and a rate limit, verified in constant time, revoked with an audit event in the same
transaction."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from prognos.errors import ConfigError, StorageError
from prognos.storage.models import ApiKey
from prognos.storage.records import normalise_record
from prognos.storage.repository import insert_ignore

if TYPE_CHECKING:
    from prognos.storage.database import Database

SCOPES = frozenset({"read", "predict", "ingest", "admin"})
KEY_MARKER = "pk_"
_PREFIX_LEN = 8

_API_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ApiKeyInfo:
    """What the service needs to know about a key; never its hash or plaintext."""

    name: str
    scopes: frozenset[str]
    rate_limit_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        """Whether the key may use ``scope``; ``admin`` allows everything."""
        return scope in self.scopes or "admin" in self.scopes


def _info(row: RowMapping) -> ApiKeyInfo:
    return ApiKeyInfo(
        name=row["name"],
        scopes=frozenset(row["scopes"]),
        rate_limit_per_minute=row["rate_limit_per_minute"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def hash_key(plaintext: str) -> str:
    """What is stored of a key (SHA-256, hex); the service's key cache is keyed by it too."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _audit_row(actor: str, action: str, subject: str, details: dict[str, Any]) -> dict[str, Any]:
    return normalise_record(
        "audit", {"actor": actor, "action": action, "subject": subject, "details": details}
    )


def create_api_key(
    db: Database,
    name: str,
    scopes: Iterable[str],
    rate_limit_per_minute: int | None = None,
    *,
    actor: str = "cli",
) -> tuple[str, ApiKeyInfo]:
    """Create a key; returns its plaintext, the only time it exists outside the caller.

    Only a SHA-256 hash is stored. Unknown scopes, an empty or taken name and a non-positive rate
    limit raise :class:`ConfigError`. The creation is audited in the same transaction.
    """
    name = name.strip()
    if not name:
        raise ConfigError("an API key needs a non-empty name")
    wanted = frozenset(s.strip() for s in scopes if s.strip())
    unknown = wanted - SCOPES
    if unknown:
        raise ConfigError(
            f"unknown API key scope(s): {', '.join(sorted(unknown))} "
            f"(expected some of {', '.join(sorted(SCOPES))})"
        )
    if not wanted:
        raise ConfigError(f"an API key needs at least one scope of {', '.join(sorted(SCOPES))}")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ConfigError(f"rate limit must be at least 1 per minute, got {rate_limit_per_minute}")

    plaintext = KEY_MARKER + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "name": name,
        "prefix": plaintext[len(KEY_MARKER) : len(KEY_MARKER) + _PREFIX_LEN],
        "key_hash": hash_key(plaintext),
        "scopes": sorted(wanted),
        "rate_limit_per_minute": rate_limit_per_minute,
        "created_at": now,
    }
    audit = _audit_row(
        actor,
        "api_key.create",
        name,
        {"scopes": sorted(wanted), "rate_limit_per_minute": rate_limit_per_minute},
    )
    try:
        with db.begin("creating an API key") as conn:
            conn.execute(_API_KEYS.insert(), row)
            insert_ignore(conn, "audit", [audit])
    except StorageError as err:
        if isinstance(err.__cause__, IntegrityError):
            raise ConfigError(f"an API key named {name!r} already exists") from err
        raise
    info = ApiKeyInfo(
        name=name, scopes=wanted, rate_limit_per_minute=rate_limit_per_minute, created_at=now
    )
    return plaintext, info


def verify_api_key(db: Database, plaintext: str) -> ApiKeyInfo | None:
    """The key's info when ``plaintext`` is a live (not revoked) key, else None.

    One indexed lookup by prefix, then a constant-time hash comparison.
    """
    if not plaintext.startswith(KEY_MARKER) or len(plaintext) < len(KEY_MARKER) + _PREFIX_LEN:
        return None
    prefix = plaintext[len(KEY_MARKER) : len(KEY_MARKER) + _PREFIX_LEN]
    digest = hash_key(plaintext)
    k = _API_KEYS.c
    stmt = select(_API_KEYS).where(k.prefix == prefix, k.revoked_at.is_(None))
    with db.translate_errors("verifying an API key"), db.engine.connect() as conn:
        candidates = list(conn.execute(stmt).mappings())
    for row in candidates:
        if hmac.compare_digest(row["key_hash"], digest):
            return _info(row)
    return None


def list_api_keys(db: Database) -> list[ApiKeyInfo]:
    """Every key, revoked ones included (``revoked_at`` set), oldest first."""
    k = _API_KEYS.c
    stmt = select(_API_KEYS).order_by(k.created_at, k.name)
    with db.translate_errors("listing API keys"), db.engine.connect() as conn:
        return [_info(r) for r in conn.execute(stmt).mappings()]


def api_key_revocations(db: Database) -> tuple[int, datetime | None]:
    """How many keys are revoked and the newest revocation: a marker that moves with every
    revocation, cheap enough for each service worker to read every second."""
    k = _API_KEYS.c
    stmt = select(func.count(), func.max(k.revoked_at)).where(k.revoked_at.is_not(None))
    with db.translate_errors("checking API key revocations"), db.engine.connect() as conn:
        count, newest = conn.execute(stmt).one()
    return int(count), newest


def revoked_api_key_hashes(db: Database) -> set[str]:
    """The SHA-256 hashes of every revoked key, for a service to drop from its caches."""
    k = _API_KEYS.c
    stmt = select(k.key_hash).where(k.revoked_at.is_not(None))
    with db.translate_errors("listing revoked API keys"), db.engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def revoke_api_key(db: Database, name: str, *, actor: str = "cli") -> ApiKeyInfo:
    """Revoke a key by name (audited); revoking a revoked key changes nothing.

    An unknown name raises :class:`ConfigError`.
    """
    k = _API_KEYS.c
    now = datetime.now(UTC)
    with db.begin("revoking an API key", immediate=True) as conn:
        revoked = conn.execute(
            update(_API_KEYS).where(k.name == name, k.revoked_at.is_(None)).values(revoked_at=now)
        ).rowcount
        row = conn.execute(select(_API_KEYS).where(k.name == name)).mappings().first()
        if row is None:
            raise ConfigError(f"no API key named {name!r}")
        if revoked:
            insert_ignore(conn, "audit", [_audit_row(actor, "api_key.revoke", name, {})])
        return _info(row)
