"""Erasing a person: every row that holds their id, their traits or their events, in one
transaction, and an audit record that an erasure happened.

What goes: the lead (traits, scores, owner), every event stored under its id or, not yet
attributed, under an anonymous id linked to it (their message ids with them, so a message sent
again later is taken as new), the identity links, the stage history, assignments, touches, MQL episodes, and the
webhook notifications about the lead: those never sent (waiting, or out of retries) are
dropped with their attempts; sent ones keep only their event name (``{"type": …, "erased":
true}``), so the delivery counts stay true.

What stays: one ``erasures`` row with the time, who asked (the API key or the operator) and a
salted PBKDF2 hash of the id. The hash can answer "was this id erased?" for someone who already
has the id (``check_erased``) and cannot be reversed into a list of who was erased; the row
says nothing of what was erased. A later event for the same id starts a new lead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..errors import NotFoundError
from ..store import schema as t
from .common import dumps, iso, loads

__all__ = ["check_erased", "erase_lead", "hash_subject", "list_erasures"]

_ITERATIONS = 100_000


def hash_subject(lead_id: str, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` of the id, with a new random salt by default."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac(
        "sha256", lead_id.encode("utf-8", "surrogatepass"), salt, _ITERATIONS
    )
    return f"pbkdf2_sha256${_ITERATIONS}${salt.hex()}${digest.hex()}"


def _matches(lead_id: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    got = hashlib.pbkdf2_hmac(
        "sha256", lead_id.encode("utf-8", "surrogatepass"), bytes.fromhex(salt), int(iterations)
    )
    return hmac.compare_digest(got.hex(), digest)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _notifications(conn: Connection, lead_id: str) -> list[Any]:
    """The outbox rows whose payload is about this lead (a text search narrows, JSON decides)."""
    needle = '"lead_id":' + dumps(lead_id)
    rows = conn.execute(
        sa.select(
            t.outbox.c.id,
            t.outbox.c.event,
            t.outbox.c.payload,
            t.outbox.c.delivered_at_us,
        ).where(t.outbox.c.payload.like("%" + _like_escape(needle) + "%", escape="\\"))
    ).all()
    return [r for r in rows if (loads(r.payload) or {}).get("lead_id") == lead_id]


def erase_lead(conn: Connection, lead_id: str, by: str, now_us: int) -> dict[str, Any]:
    """Erase the person ``lead_id`` in the caller's write transaction (NotFoundError when there
    is no such lead); what was removed, by table, for the caller to show (not stored)."""
    if conn.dialect.name == "postgresql":
        # no ingest may store an event for this person between the reads and the deletes
        # below: it waits, then finds no lead and starts a new one (readers are not held up)
        conn.execute(sa.text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
    found = conn.execute(
        sa.select(t.leads.c.lead_id).where(t.leads.c.lead_id == lead_id).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no lead {lead_id!r}")
    removed: dict[str, int] = {}

    def delete(table: sa.Table, *where: Any) -> None:
        removed[table.name] = (
            removed.get(table.name, 0) + conn.execute(sa.delete(table).where(*where)).rowcount
        )

    linked = sa.select(t.identities.c.anonymous_id).where(t.identities.c.lead_id == lead_id)
    # their events, and any still unattributed under an anonymous id linked to them (an
    # event another lead's userId carries stays: it is that lead's, on a shared device)
    delete(
        t.events,
        sa.or_(
            t.events.c.lead_id == lead_id,
            sa.and_(t.events.c.lead_id.is_(None), t.events.c.anonymous_id.in_(linked)),
        ),
    )
    delete(t.identities, t.identities.c.lead_id == lead_id)
    for table in (t.stage_history, t.assignments, t.touches, t.mql_episodes):
        delete(table, table.c.lead_id == lead_id)

    rows = _notifications(conn, lead_id)
    # never sent (waiting, or out of retries: `webhooks retry` must not send them): dropped
    pending = [r.id for r in rows if r.delivered_at_us is None]
    if pending:
        delete(t.deliveries, t.deliveries.c.outbox_id.in_(pending))
        delete(t.outbox, t.outbox.c.id.in_(pending))
    done = [r for r in rows if r.id not in set(pending)]
    for r in done:
        conn.execute(
            sa.update(t.outbox)
            .where(t.outbox.c.id == r.id)
            .values(payload=dumps({"type": r.event, "erased": True}))
        )
    removed["outbox (redacted)"] = len(done)
    delete(t.leads, t.leads.c.lead_id == lead_id)

    audit = conn.execute(
        sa.insert(t.erasures)
        .values(at_us=now_us, by=by[:255], subject_hash=hash_subject(lead_id))
        .returning(t.erasures.c.id)
    ).scalar_one()
    return {
        "lead_id": lead_id,
        "erased": True,
        "erasure_id": audit,
        "at": iso(now_us),
        "by": by,
        "removed": {k: v for k, v in removed.items() if v},
    }


def list_erasures(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """The audit records, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.erasures).order_by(t.erasures.c.id.desc()).limit(limit)
        ).all()
    return [{"id": r.id, "at": iso(r.at_us), "by": r.by} for r in rows]


def check_erased(engine: Engine, lead_id: str) -> list[dict[str, Any]]:
    """The audit records of erasures of ``lead_id`` (each hash is checked with its own salt)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.erasures).order_by(t.erasures.c.id)).all()
    return [
        {"id": r.id, "at": iso(r.at_us), "by": r.by}
        for r in rows
        if r.subject_hash and _matches(lead_id, r.subject_hash)
    ]
