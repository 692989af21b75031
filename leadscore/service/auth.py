"""Write keys and API tokens: made once, shown once, stored as SHA-256 hashes, compared in
constant time. Scopes: ``ingest`` (the Segment endpoints only), ``read`` (the read API),
``admin`` (everything, including models)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import ConfigError
from ..store import schema as t
from .common import iso, now_us

__all__ = ["SCOPES", "create_key", "find_key", "list_keys", "revoke_key"]

SCOPES = ("ingest", "read", "admin")
_PREFIX = {"ingest": "lsw_", "read": "lsr_", "admin": "lsa_"}


def _hash(secret: str) -> str:
    # surrogatepass: a presented secret may be any string; it then matches no key
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(engine: Engine, name: str, scope: str) -> tuple[int, str]:
    if scope not in SCOPES:
        raise ConfigError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if not name.strip():
        raise ConfigError("give the key a name with --name")
    secret = _PREFIX[scope] + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        key_id = conn.execute(
            sa.insert(t.api_keys)
            .values(
                name=name.strip(),
                scope=scope,
                prefix=secret[:8],
                secret_hash=_hash(secret),
                created_at_us=now_us(),
            )
            .returning(t.api_keys.c.id)
        ).scalar_one()
    return int(key_id), secret


def find_key(engine: Engine, secret: Any) -> Any:
    """The key row for a presented secret, or None (also for anything but a string). The
    lookup is by hash; the final check is a constant-time comparison of the hashes."""
    if not secret or not isinstance(secret, str):
        return None
    digest = _hash(secret)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(t.api_keys).where(
                t.api_keys.c.secret_hash == digest, t.api_keys.c.revoked_at_us.is_(None)
            )
        ).first()
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        return None
    return row


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.api_keys).order_by(t.api_keys.c.id)).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "scope": r.scope,
            "prefix": r.prefix,
            "created_at": iso(r.created_at_us),
            "revoked_at": iso(r.revoked_at_us),
        }
        for r in rows
    ]


def revoke_key(engine: Engine, key_id: int) -> bool:
    with engine.begin() as conn:
        n = conn.execute(
            sa.update(t.api_keys)
            .where(t.api_keys.c.id == key_id, t.api_keys.c.revoked_at_us.is_(None))
            .values(revoked_at_us=now_us())
        ).rowcount
    return bool(n)
