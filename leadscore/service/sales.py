"""What sales does with a lead after the handoff, each in the caller's transaction: touches
(which stop the SLA clock), stage moves through the pure lifecycle rules (kept in the stage
history and the lead's MQL episode, announced by ``lead.stage_changed``), reassignments, and
reps' time away."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..engine import round2
from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..handoff import Routing, check_move, rep_key
from ..store import schema as t
from .accounts import email_domain
from .common import US, iso, json_param, loads
from .handoff import OPEN_STAGES, Assigner, assign, open_episode, stored_facts
from .notify import Notifier
from .routing_versions import ActiveRouting

__all__ = [
    "TOUCH_KINDS",
    "known_reps",
    "latest_episode",
    "list_reps",
    "move",
    "reassign",
    "set_away",
    "touch",
]

TOUCH_KINDS = ("call", "email", "meeting")
#: a touch or a move may be dated this far ahead of the service's clock (clock skew)
_AHEAD_US = 5 * 60 * US
#: the episode column a move to a working stage sets, the first time only
_REACHED = {
    "sal": "sal_at_us",
    "sql": "sql_at_us",
    "opportunity": "opportunity_at_us",
    "customer": "customer_at_us",
}
_CLOSING = ("recycled", "disqualified")


def _lead(conn: Connection, lead: str) -> Any:
    if "\x00" in lead:
        raise NotFoundError(f"no lead {lead!r}")
    row = conn.execute(
        sa.select(t.leads.c.lead_id, t.leads.c.stage, t.leads.c.owner, t.leads.c.team).where(
            t.leads.c.lead_id == lead
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no lead {lead!r}")
    return row


def latest_episode(conn: Connection, lead: str) -> Any:
    """The lead's latest MQL episode row, or None."""
    return conn.execute(
        sa.select(t.mql_episodes)
        .where(t.mql_episodes.c.lead_id == lead)
        .order_by(t.mql_episodes.c.id.desc())
        .limit(1)
    ).first()


def _not_ahead(at_us: int, now_us: int, what: str) -> None:
    if at_us > now_us + _AHEAD_US:
        raise InvalidRequestError(f"{what} is dated {iso(at_us)}, in the future")


# ---------------------------------------------------------------------- touches


def touch(
    conn: Connection, *, lead: str, kind: str, by: str, at_us: int, now_us: int
) -> dict[str, Any]:
    """Record a call, email or meeting. The first touch of the episode at or after its MQL
    stops the SLA clock; a touch dated at or before the deadline that arrives after a breach was
    marked clears the breach."""
    if kind not in TOUCH_KINDS:
        raise InvalidRequestError(f"touch kind {kind!r}: use one of {', '.join(TOUCH_KINDS)}")
    if not by.strip():
        raise InvalidRequestError("a touch needs 'by': who made it")
    by = rep_key(by)
    _lead(conn, lead)
    _not_ahead(at_us, now_us, "the touch")
    ep = latest_episode(conn, lead)
    if ep is None:
        raise InvalidRequestError(
            f"lead {lead!r} has not become an MQL: touches count from its MQL moment"
        )
    if at_us < ep.mql_at_us:
        raise InvalidRequestError(
            f"the touch is dated {iso(at_us)}, before the lead became an MQL at {iso(ep.mql_at_us)}"
        )
    conn.execute(
        sa.insert(t.touches).values(
            lead_id=lead, kind=kind, by=by, at_us=at_us, received_at_us=now_us
        )
    )
    first = ep.first_touch_at_us if ep.first_touch_at_us is not None else at_us
    first = min(first, at_us)
    breached = ep.sla_breached_at_us
    cleared = breached is not None and ep.sla_due_at_us is not None and first <= ep.sla_due_at_us
    conn.execute(
        sa.update(t.mql_episodes)
        .where(t.mql_episodes.c.id == ep.id)
        .values(first_touch_at_us=first, sla_breached_at_us=None if cleared else breached)
    )
    return {
        "lead_id": lead,
        "kind": kind,
        "by": by,
        "at": iso(at_us),
        "first_touch_at": iso(first),
        "breach_cleared": cleared,
    }


# ---------------------------------------------------------------------- stage moves


def move(
    conn: Connection,
    notifier: Notifier,
    routing: ActiveRouting | None,
    *,
    lead: str,
    to: str,
    by: str,
    reason: str | None,
    bant: dict[str, Any] | None,
    come_back_at_us: int | None,
    at_us: int,
    now_us: int,
    expected: str | None = None,
) -> dict[str, Any]:
    """Move a lead to another stage by a person (or the CRM). ``expected``: the stage the
    caller saw; if the lead has moved since, ConflictError. The lead's stage is changed with a
    compare-and-set, so of two moves at once one wins and the other gets ConflictError."""
    if not by.strip():
        raise InvalidRequestError("a stage move needs 'by': who moved the lead")
    by = rep_key(by)
    row = _lead(conn, lead)
    frm = row.stage
    if expected is not None and expected != frm:
        raise ConflictError(
            f"lead {lead!r} is at stage {frm!r} now, not {expected!r}: someone moved it first"
        )
    _not_ahead(at_us, now_us, "the move")
    last = conn.execute(
        sa.select(sa.func.max(t.stage_history.c.at_us)).where(t.stage_history.c.lead_id == lead)
    ).scalar()
    if last is not None and at_us < last:
        raise InvalidRequestError(
            f"the move is dated {iso(at_us)}, before the lead's last stage change at {iso(last)}"
        )
    reasons = routing.routing.rejection_reasons if routing is not None else ()
    checked = check_move(
        frm,
        to,
        reason=reason,
        bant=bant,
        rejection_reasons=reasons,
        come_back_at_us=come_back_at_us,
        at_us=at_us,
    )
    reason, bant = checked.reason, checked.bant
    values: dict[str, Any] = {"stage": to, "updated_at_us": now_us}
    if to == "mql":  # a recycled lead taken back by hand: a new MQL
        values.update(mql_at_us=at_us, mql_reason=reason or f"moved to mql by {by}")
    changed = conn.execute(
        sa.update(t.leads).where(t.leads.c.lead_id == lead, t.leads.c.stage == frm).values(**values)
    ).rowcount
    if changed != 1:
        raise ConflictError(f"lead {lead!r} was moved by someone else at the same time; reload it")
    dialect = conn.dialect.name
    conn.execute(
        sa.insert(t.stage_history).values(
            lead_id=lead,
            stage=to,
            at_us=at_us,
            reason=reason or "",
            by=by,
            bant=json_param(bant, dialect),
            come_back_at_us=come_back_at_us,
            received_at_us=now_us,
        )
    )
    ep = latest_episode(conn, lead)
    if to == "mql":
        _reopen(conn, notifier, routing, lead, at_us, now_us)
    elif ep is not None and ep.closed_at_us is None:
        values = {"stage": to}
        if to in _REACHED and getattr(ep, _REACHED[to]) is None:
            values[_REACHED[to]] = at_us
        if to in _CLOSING:
            values.update(closed_stage=to, closed_reason=reason or "", closed_at_us=at_us)
        conn.execute(sa.update(t.mql_episodes).where(t.mql_episodes.c.id == ep.id).values(**values))
    out = {
        "lead_id": lead,
        "from": frm,
        "stage": to,
        "at": iso(at_us),
        "by": by,
        "reason": reason or "",
        "bant": bant,
        "come_back_at": iso(come_back_at_us),
        "owner": row.owner,
    }
    notifier.queue("lead.stage_changed", dict(out))
    return out


def _reopen(
    conn: Connection,
    notifier: Notifier,
    routing: ActiveRouting | None,
    lead: str,
    at_us: int,
    now_us: int,
) -> None:
    """A new MQL episode for a lead moved back to mql by hand, routed as the model's are."""
    row = conn.execute(sa.select(t.leads).where(t.leads.c.lead_id == lead)).one()
    traits = loads(row.traits) or {}
    episode = open_episode(
        conn, lead, at_us, "fast_track" if row.fast_track else "threshold", None, traits
    )
    conn.execute(
        sa.update(t.mql_episodes)
        .where(t.mql_episodes.c.id == episode)
        .values(grade=row.grade, score=round2(row.score))
    )
    if routing is not None:
        assigner = Assigner(conn, routing, now_us, notifier)
        assigner.route(lead, episode, at_us, stored_facts(row, traits), email_domain(traits))


# ---------------------------------------------------------------------- owners and reps


def known_reps(routing: Routing | None) -> list[str]:
    """Every rep the routing names: team members, owners of rules, the fallback, escalations."""
    if routing is None:
        return []
    names: list[str] = []
    for team in routing.teams.values():
        names.extend(team.members)
    names.extend(r.owner for r in routing.rules if r.owner)
    names.append(routing.fallback)
    names.extend(s.escalate_to for s in routing.sla if s.escalate_to)
    return list(dict.fromkeys(n for n in names if n))


def _check_rep(conn: Connection, routing: ActiveRouting | None, email: str) -> None:
    """A rep is known when the active routing names them, or they are in the reps table or own
    a lead; without an active routing any address is taken."""
    if not email.strip() or "\x00" in email:
        raise InvalidRequestError("a rep is named by their email address")
    if routing is None or email in known_reps(routing.routing):
        return
    seen = (
        conn.execute(
            sa.select(sa.literal(1)).select_from(t.reps).where(t.reps.c.email == email)
        ).first()
        or conn.execute(
            sa.select(sa.literal(1)).select_from(t.leads).where(t.leads.c.owner == email).limit(1)
        ).first()
    )
    if seen is None:
        raps = ", ".join(known_reps(routing.routing))
        raise NotFoundError(f"no rep {email!r} in routing {routing.routing.name!r} (reps: {raps})")


def reassign(
    conn: Connection,
    notifier: Notifier,
    routing: ActiveRouting | None,
    *,
    lead: str,
    owner: str,
    by: str,
    reason: str | None,
    now_us: int,
) -> dict[str, Any]:
    """Give a lead to another owner by hand; kept in the assignment history."""
    if not by.strip():
        raise InvalidRequestError("a reassignment needs 'by': who made it")
    by, owner = rep_key(by), rep_key(owner)
    row = _lead(conn, lead)
    _check_rep(conn, routing, owner)
    if row.owner == owner:
        return {"lead_id": lead, "owner": owner, "team": row.team, "unchanged": True}
    team = routing.routing.team_of(owner) if routing is not None else None
    ep = latest_episode(conn, lead)
    episode_id = ep.id if ep is not None and ep.closed_at_us is None else None
    assign(
        conn,
        notifier,
        lead=lead,
        episode_id=episode_id,
        owner=owner,
        team=team,
        rule=None,
        kind="reassign",
        routing_version=routing.version if routing is not None else None,
        decision={"reason": reason or "", "from": row.owner},
        at_us=now_us,
        by=by,
        previous=row.owner,
        reason=reason or "",
    )
    return {
        "lead_id": lead,
        "owner": owner,
        "team": team,
        "previous_owner": row.owner,
        "at": iso(now_us),
        "by": by,
        "reason": reason or "",
    }


def set_away(
    conn: Connection, routing: ActiveRouting | None, email: str, away: bool, now_us: int
) -> dict[str, Any]:
    """Mark a rep away (round robin skips them) or back (they rejoin the rotation where it is:
    no catch-up of the leads they missed)."""
    email = rep_key(email)
    _check_rep(conn, routing, email)
    row = conn.execute(sa.select(t.reps).where(t.reps.c.email == email)).first()
    if away:
        values: dict[str, Any] = {
            "away": True,
            "away_since_us": row.away_since_us if row is not None and row.away else now_us,
            "back_at_us": None,
        }
    else:
        values = {
            "away": False,
            "away_since_us": row.away_since_us if row is not None else None,
            "back_at_us": now_us
            if row is not None and row.away
            else (row.back_at_us if row else None),
        }
    values["updated_at_us"] = now_us
    if row is None:
        conn.execute(sa.insert(t.reps).values(email=email, **values))
    else:
        conn.execute(sa.update(t.reps).where(t.reps.c.email == email).values(**values))
    return _rep_view(email, values, routing, None)


def _rep_view(
    email: str, r: Any, routing: ActiveRouting | None, open_mqls: int | None
) -> dict[str, Any]:
    get = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    teams = (
        [n for n, team in routing.routing.teams.items() if email in team.members]
        if routing is not None
        else []
    )
    out: dict[str, Any] = {
        "email": email,
        "away": bool(get("away")) if r is not None else False,
        "away_since": iso(get("away_since_us")) if r is not None else None,
        "back_at": iso(get("back_at_us")) if r is not None else None,
        "teams": teams,
    }
    if open_mqls is not None:
        out["open_mqls"] = open_mqls
    return out


def list_reps(conn: Connection, routing: ActiveRouting | None) -> list[dict[str, Any]]:
    """Every rep the routing names or who owns a lead, with time away and open MQLs."""
    rows = {r.email: r for r in conn.execute(sa.select(t.reps))}
    counts = {
        owner: int(n)
        for owner, n in conn.execute(
            sa.select(t.leads.c.owner, sa.func.count())
            .where(t.leads.c.owner.is_not(None), t.leads.c.stage.in_(OPEN_STAGES))
            .group_by(t.leads.c.owner)
        )
    }
    names = known_reps(routing.routing if routing is not None else None)
    names += sorted((set(rows) | set(counts)) - set(names))
    return [_rep_view(n, rows.get(n), routing, counts.get(n, 0)) for n in names]
