"""Write keys and API tokens: made once, shown once, stored as SHA-256 hashes, compared in
constant time. Scopes: ``ingest`` (the Segment endpoints only), ``read`` (the read API),
``admin`` (everything, including models).

A key found valid is remembered in the process for at most ``POLL_S`` (one second), so a
request does not pay a database read for its key: a key revoked by another process (``leadscore
keys revoke``, another server) stops working in every process within that second; revoking
through this process forgets it at once. Only valid keys are remembered, and at most
``KeyCache.size`` of them, so presented secrets that match no key never take memory."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..errors import ConfigError
from ..store import schema as t
from .common import POLL_S, iso, now_us

__all__ = [
    "REMEMBERED_LEN",
    "SCOPES",
    "KeyCache",
    "create_key",
    "find_key",
    "key_cache",
    "list_keys",
    "remembered_key",
    "revoke_key",
]

SCOPES = ("ingest", "read", "admin")
_PREFIX = {"ingest": "lsw_", "read": "lsr_", "admin": "lsa_"}
#: the longest secret ``remembered_key`` hashes (a key is 47 characters); a longer one cannot
#: be a key and is left to ``find_key``, off the event loop
REMEMBERED_LEN = 64


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


class KeyCache:
    """Valid keys by secret hash, each for at most ``ttl`` seconds of ``clock`` after the read
    that found it, the ``size`` most recently used at most (thread-safe)."""

    def __init__(
        self, ttl: float = POLL_S, size: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._rows: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        #: counts ``clear``: a row read before a clear (a revoke) is not remembered after it
        self.generation = 0

    def __len__(self) -> int:
        return len(self._rows)

    def now(self) -> float:
        return self.clock()

    def get(self, digest: str) -> Any:
        """The row remembered for ``digest`` if it was read less than ``ttl`` ago, else None."""
        with self._lock:
            got = self._rows.get(digest)
            if got is None:
                return None
            if self.clock() - got[0] >= self.ttl:
                del self._rows[digest]
                return None
            self._rows.move_to_end(digest)
            return got[1]

    def put(self, digest: str, row: Any, read_at: float, generation: int | None = None) -> None:
        """Remember a valid key's row, read from the database at ``read_at`` (taken before
        the read began, so the row is never trusted for longer than ``ttl``). ``generation``:
        the cache's when the read began; a ``clear`` since (a key revoked by this process
        while the row was read) leaves the row unremembered."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._rows[digest] = (read_at, row)
            self._rows.move_to_end(digest)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.generation += 1


# one cache per engine (per database) in the process
_CACHES: weakref.WeakKeyDictionary[Engine, KeyCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def key_cache(engine: Engine) -> KeyCache:
    """The keys this process remembers for ``engine``'s database."""
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
        if cache is None:
            cache = _CACHES[engine] = KeyCache()
        return cache


def remembered_key(engine: Engine, secret: Any, cache: KeyCache | None = None) -> Any:
    """The key row for a presented secret when this process remembers it as valid, else None
    (a key not remembered, not valid, or anything but a string of at most ``REMEMBERED_LEN``
    characters). No database read and at most one hash of a short string: the event loop may
    call it, and hand only what it does not find to ``find_key``."""
    if not secret or not isinstance(secret, str) or len(secret) > REMEMBERED_LEN:
        return None
    digest = _hash(secret)
    row = (key_cache(engine) if cache is None else cache).get(digest)
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        return None
    return row


def find_key(engine: Engine, secret: Any, cache: KeyCache | None = None) -> Any:
    """The key row for a presented secret, or None (also for anything but a string). The
    lookup is by hash; the final check is a constant-time comparison of the hashes. A key
    found valid is remembered (``cache``, by default the engine's) for at most a second."""
    if not secret or not isinstance(secret, str):
        return None
    digest = _hash(secret)
    if cache is None:
        cache = key_cache(engine)
    row = cache.get(digest)
    if row is not None:
        return row if hmac.compare_digest(row.secret_hash, digest) else None
    read_at = cache.now()
    generation = cache.generation
    # ends in COMMIT, not ROLLBACK: psycopg forgets a connection's prepared statements (the
    # ingest's) at every ROLLBACK
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(t.api_keys).where(
                t.api_keys.c.secret_hash == digest, t.api_keys.c.revoked_at_us.is_(None)
            )
        ).first()
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        return None
    cache.put(digest, row, read_at, generation)
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
    # this process forgets every remembered key at once (whichever engine found it); other
    # processes within POLL_S
    with _CACHES_LOCK:
        caches = list(_CACHES.values())
    for cache in caches:
        cache.clear()
    return bool(n)
