"""The handoff as a lead shows it: owner and team, the routing decision that placed it (the
rules tried, the reps skipped and why, the fallback), its SLA, its assignments and touches."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..store import schema as t
from .common import iso, loads

__all__ = ["handoff_view", "history_entry"]


def history_entry(h: Any) -> dict[str, Any]:
    """One stage-history row as shown: when, who, why, and BANT or a come-back date."""
    out: dict[str, Any] = {
        "stage": h.stage,
        "at": iso(h.at_us),
        "by": h.by,
        "reason": h.reason,
        "model_version": h.model_version,
    }
    if h.bant is not None:
        out["bant"] = loads(h.bant)
    if h.come_back_at_us is not None:
        out["come_back_at"] = iso(h.come_back_at_us)
    if h.received_at_us is not None and h.received_at_us != h.at_us:
        out["received_at"] = iso(h.received_at_us)
    return out


def handoff_view(conn: Connection, lead: Any) -> dict[str, Any]:
    """The handoff fields of a lead (``lead``: its row)."""
    lead_id = lead.lead_id
    ep = conn.execute(
        sa.select(t.mql_episodes)
        .where(t.mql_episodes.c.lead_id == lead_id)
        .order_by(t.mql_episodes.c.id.desc())
        .limit(1)
    ).first()
    assignments = conn.execute(
        sa.select(t.assignments)
        .where(t.assignments.c.lead_id == lead_id)
        .order_by(t.assignments.c.id)
    ).all()
    touches = conn.execute(
        sa.select(t.touches).where(t.touches.c.lead_id == lead_id).order_by(t.touches.c.at_us)
    ).all()
    episodes = conn.execute(
        sa.select(sa.func.count()).where(t.mql_episodes.c.lead_id == lead_id)
    ).scalar_one()
    routed = [a for a in assignments if a.by == "routing"]
    decision = routed[-1] if routed else None
    out: dict[str, Any] = {
        "owner": lead.owner,
        "team": lead.team,
        "assigned_at": iso(lead.assigned_at_us),
        "routing": None,
        "sla": None,
        "mql_episodes": int(episodes),
        "assignments": [
            {
                "owner": a.owner,
                "team": a.team,
                "kind": a.kind,
                "rule": a.rule,
                "at": iso(a.at_us),
                "by": a.by,
                **(
                    {"reason": d.get("reason", ""), "from": d.get("from")}
                    if a.kind in ("reassign", "escalate")
                    and isinstance(d := loads(a.decision), dict)
                    else {}
                ),
            }
            for a in assignments
        ],
        "touches": [
            {"kind": x.kind, "by": x.by, "at": iso(x.at_us), "received_at": iso(x.received_at_us)}
            for x in touches
        ],
    }
    if decision is not None:
        d = loads(decision.decision) or {}
        out["routing"] = {
            "routing_version": decision.routing_version,
            "rule": decision.rule,
            "kind": decision.kind,
            "owner": decision.owner,
            "team": decision.team,
            "at": iso(decision.at_us),
            "path": d.get("path", []),
        }
    if ep is not None and ep.sla_name is not None:
        out["sla"] = {
            "name": ep.sla_name,
            "due_at": iso(ep.sla_due_at_us),
            "first_touch_at": iso(ep.first_touch_at_us),
            "breached_at": iso(ep.sla_breached_at_us),
            "notified_at": iso(ep.sla_notified_at_us),
            "escalated_to": ep.escalated_to,
        }
    return out
