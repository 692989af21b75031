"""The handoff at the moment a lead becomes an MQL, in the transaction that makes it one: open
its MQL episode, route it with the active routing (the pure ``leadscore.handoff.route``), record
the assignment and the lead's owner, move the team's round robin on, set the SLA deadline
(``leadscore.handoff.sla_for``) and queue ``lead.assigned``.

``Assigner`` holds one transaction's working state (reps, round robin, open MQL counts, the
subscribed webhooks), read once and kept current as it assigns, so a batch that makes several
MQLs routes them one after the other exactly as separate calls would. ``assign`` writes any
assignment (routing, reassignment, escalation) the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..engine import LeadScore, round2
from ..errors import InvalidRequestError
from ..handoff import Decision, RepState, Routing, SlaClock, crm_stage, route, sla_for
from ..store import schema as t
from . import locks
from .accounts import FREE_MAIL, account_owner, email_domain
from .common import dumps, iso, json_param, loads
from .handoff_state import HandoffState, read_state
from .handoff_writes import insert_assignments, insert_episodes, pipelined, save_round_robin
from .notify import Notifier
from .routing_versions import ActiveRouting

__all__ = [
    "OPEN_STAGES",
    "Assigner",
    "assign",
    "crm_stage_for",
    "lead_facts",
    "open_episode",
    "route_unowned",
    "source_and_campaign",
    "stored_facts",
]

#: the stages at which an owned lead counts towards its rep's max_open_mqls
OPEN_STAGES = ("mql", "sal")


def lead_facts(traits: Mapping[str, Any], score: LeadScore) -> dict[str, Any]:
    """What routing and SLA conditions read: the traits and the score's parts (as shown)."""
    return {
        **traits,
        "score": round2(score.score),
        "fit": round2(score.fit),
        "engagement": round2(score.engagement),
        "grade": score.grade,
        "fast_track": bool(score.fast_track),
    }


def stored_facts(row: Any, traits: Mapping[str, Any]) -> dict[str, Any]:
    """``lead_facts`` from a lead's stored row (its score when last written)."""
    return {
        **traits,
        "score": round2(row.score),
        "fit": round2(row.fit),
        "engagement": round2(row.engagement),
        "grade": row.grade,
        "fast_track": bool(row.fast_track),
    }


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, dict | list) or v == "":
        return None
    return str(v)[:255]


def source_and_campaign(traits: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The lead's source (``source``, else ``utm_source``, else a ``campaign`` object's
    ``source``) and campaign (``campaign``, else ``utm_campaign``, else the object's ``name``)."""
    camp = traits.get("campaign")
    obj = camp if isinstance(camp, dict) else {}
    source = (
        _text(traits.get("source")) or _text(traits.get("utm_source")) or _text(obj.get("source"))
    )
    campaign = (
        (None if isinstance(camp, dict) else _text(camp))
        or _text(traits.get("utm_campaign"))
        or _text(obj.get("name"))
    )
    return source, campaign


def open_episode(
    conn: Connection,
    lead: str,
    mql_at: int,
    track: str,
    score: LeadScore | None,
    traits: Mapping[str, Any],
    stage: str = "mql",
) -> int:
    """A new MQL episode (the lead's previous one, if any, was closed by a recycle)."""
    source, campaign = source_and_campaign(traits)
    return int(
        conn.execute(
            sa.insert(t.mql_episodes)
            .values(
                lead_id=lead,
                mql_at_us=mql_at,
                track=track,
                grade=score.grade if score is not None else None,
                score=round2(score.score) if score is not None else None,
                source=source,
                campaign=campaign,
                stage=stage,
            )
            .returning(t.mql_episodes.c.id)
        ).scalar_one()
    )


def assign(
    conn: Connection,
    notifier: Notifier,
    *,
    lead: str,
    episode_id: int | None,
    owner: str,
    team: str | None,
    rule: str | None,
    kind: str,
    routing_version: int | None,
    decision: dict[str, Any] | None,
    at_us: int,
    by: str,
    previous: str | None = None,
    reason: str | None = None,
    sla: dict[str, Any] | None = None,
) -> None:
    """One assignment: its history row, the lead's owner, the episode's (the first assignment
    of an episode sets its ``assigned_at``), and ``lead.assigned``."""
    conn.execute(
        sa.insert(t.assignments).values(
            lead_id=lead,
            episode_id=episode_id,
            owner=owner,
            team=team,
            rule=rule,
            kind=kind,
            routing_version=routing_version,
            decision=json_param(decision, conn.dialect.name),
            at_us=at_us,
            by=by,
        )
    )
    conn.execute(
        sa.update(t.leads)
        .where(t.leads.c.lead_id == lead)
        .values(owner=owner, team=team, assigned_at_us=at_us)
    )
    if episode_id is not None:
        values: dict[str, Any] = {
            "owner": owner,
            "team": team,
            "assigned_at_us": sa.func.coalesce(t.mql_episodes.c.assigned_at_us, at_us),
        }
        if kind == "escalate":
            values["escalated_to"] = owner
        conn.execute(
            sa.update(t.mql_episodes).where(t.mql_episodes.c.id == episode_id).values(**values)
        )
    payload: dict[str, Any] = {
        "lead_id": lead,
        "owner": owner,
        "team": team,
        "previous_owner": previous,
        "kind": kind,
        "rule": rule,
        "by": by,
        "at": iso(at_us),
        "routing_version": routing_version,
    }
    if reason is not None:
        payload["reason"] = reason
    if sla is not None:
        payload["sla"] = sla
    if decision is not None and "path" in decision:
        payload["path"] = decision["path"]
    notifier.queue("lead.assigned", payload)


class Assigner:
    """The handoff of one transaction's new MQLs (``scoring.MqlHandler``).

    Decisions are made one MQL after the other against state kept current in memory; the rows
    they produce (episodes, assignments, owners, round robin, ``lead.assigned``) are written
    together by ``flush``, which the transaction calls before it commits."""

    def __init__(
        self,
        conn: Connection,
        routing: ActiveRouting | None,
        now_us: int,
        notifier: Notifier,
        *,
        sla: bool = True,
    ) -> None:
        self.conn = conn
        self.active = routing
        self.now_us = now_us
        self.notifier = notifier
        #: whether new MQLs get the routing's SLA deadline (an import's quiet MQLs do not)
        self.sla = sla
        #: leads that keep the owner (and team) they have instead of being routed: an
        #: import's, whose owner is the CRM's
        self.owners: dict[str, tuple[str, str | None]] = {}
        self._state: HandoffState | None = None
        self._rr_stored: set[str] = set()
        self._rr_changed: set[str] = set()
        self._accounts: dict[str, str | None] = {}
        self._prefetched: dict[str, list[tuple[str, str]]] = {}
        #: rows waiting for ``flush``: episodes, and per episode its assignment and notification
        self._episodes: list[dict[str, Any]] = []
        self._routed: list[tuple[dict[str, Any], dict[str, Any]] | None] = []

    # ------------------------------------------------------------------ MqlHandler

    def admits(self, lead: str, at_us: int, stage: str | None = None) -> bool:
        """Any lead but a recycled one whose come-back date (or recycling) is after ``at_us``."""
        if stage is None:
            stage = self.conn.execute(
                sa.select(t.leads.c.stage).where(t.leads.c.lead_id == lead)
            ).scalar_one_or_none()
        if stage != "recycled":
            return True
        last = self.conn.execute(
            sa.select(t.stage_history.c.at_us, t.stage_history.c.come_back_at_us)
            .where(t.stage_history.c.lead_id == lead, t.stage_history.c.stage == "recycled")
            .order_by(t.stage_history.c.at_us.desc(), t.stage_history.c.id.desc())
            .limit(1)
        ).first()
        if last is None:
            return True
        return bool(at_us >= max(last.at_us, last.come_back_at_us or last.at_us))

    def opened(
        self, lead: str, at_us: int, score: LeadScore, traits: dict[str, Any], version: int
    ) -> dict[str, Any]:
        """Open the lead's episode and route it (written by ``flush``); the lead's owner, team
        and assignment time, for the caller to write with its stage."""
        source, campaign = source_and_campaign(traits)
        episode: dict[str, Any] = {
            "lead_id": lead,
            "mql_at_us": at_us,
            "track": "fast_track" if score.fast_track else "threshold",
            "grade": score.grade,
            "score": round2(score.score),
            "source": source,
            "campaign": campaign,
            "stage": "mql",
            "owner": None,
            "team": None,
            "assigned_at_us": None,
            "sla_name": None,
            "sla_due_at_us": None,
        }
        routed = None
        kept = self.owners.get(lead)
        if kept is not None:
            return self._kept(episode, kept, score, traits)
        if self.active is not None:
            facts = lead_facts(traits, score)
            decision, sla = self.decide(lead, at_us, facts, email_domain(traits))
            episode.update(owner=decision.owner, team=decision.team, assigned_at_us=self.now_us)
            if not self.sla:
                sla = None
            if sla is not None:
                episode.update(sla_name=sla.name, sla_due_at_us=sla.due_at_us)
            routed = self._assignment(lead, decision, sla)
        self._episodes.append(episode)
        self._routed.append(routed)
        if routed is None:
            return {}
        return {
            "owner": episode["owner"],
            "team": episode["team"],
            "assigned_at_us": episode["assigned_at_us"],
        }

    def _kept(
        self,
        episode: dict[str, Any],
        kept: tuple[str, str | None],
        score: LeadScore,
        traits: dict[str, Any],
    ) -> dict[str, Any]:
        """The episode of an MQL that keeps its owner: no routing, no assignment; the SLA of
        its team, when deadlines are set."""
        owner, team = kept
        episode.update(owner=owner, team=team)
        if self.active is not None:
            opened = self.state().open_mqls  # the owner's cap counts it from now on
            opened[owner] = opened.get(owner, 0) + 1
            if self.sla:
                sla = sla_for(
                    self.active.routing, lead_facts(traits, score), episode["mql_at_us"], team
                )
                if sla is not None:
                    episode.update(sla_name=sla.name, sla_due_at_us=sla.due_at_us)
        self._episodes.append(episode)
        self._routed.append(None)
        return {"owner": owner, "team": team}

    def flush(self) -> None:
        """Write what the transaction's MQLs produced (on PostgreSQL in one round trip)."""
        if not self._episodes and not self._rr_changed:
            return
        with pipelined(self.conn):
            if self._episodes:
                insert_episodes(self.conn, self._episodes)
                routed = [r for r in self._routed if r is not None]
                if routed:  # the leads' owners were written with their stage (``opened``)
                    insert_assignments(self.conn, [row for row, _ in routed])
                    self.notifier.queue_many("lead.assigned", [note for _, note in routed])
                self._episodes, self._routed = [], []
            if self._rr_changed:
                last = self.last_members()
                teams = sorted(self._rr_changed)
                known = {x: last[x] for x in teams if x in self._rr_stored}
                new = {x: last[x] for x in teams if x not in self._rr_stored}
                save_round_robin(self.conn, self.now_us, known, new)
                self._rr_stored.update(new)
                self._rr_changed.clear()

    # ------------------------------------------------------------------ routing

    def decide(
        self, lead: str, mql_at: int, facts: dict[str, Any], domain: str | None
    ) -> tuple[Decision, SlaClock | None]:
        """Route one MQL with the active routing; the state it changes (round robin, open MQLs,
        the account's owner) is kept for the next MQL of the transaction."""
        assert self.active is not None
        routing = self.active.routing
        decision = route(
            routing,
            facts,
            reps=self.reps(),
            last_member=self.last_members(),
            open_mqls=self.open_mqls(routing),
            at_us=self.now_us,
            account_owner=self.account_owner(lead, domain),
        )
        if decision.last_member is not None and decision.team is not None:
            self.last_members()[decision.team] = decision.last_member
            self._rr_changed.add(decision.team)
        opened = self.state().open_mqls
        opened[decision.owner] = opened.get(decision.owner, 0) + 1
        if domain is not None and domain not in FREE_MAIL:
            self._accounts[domain] = decision.owner
        return decision, sla_for(routing, facts, mql_at, decision.team)

    def _assignment(
        self, lead: str, decision: Decision, sla: SlaClock | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The assignment row of a routing decision, and its ``lead.assigned`` payload."""
        assert self.active is not None
        at = self.now_us
        path = [dict(step) for step in decision.path]
        row = {
            "lead_id": lead,
            "owner": decision.owner,
            "team": decision.team,
            "rule": decision.rule,
            "kind": decision.kind,
            "routing_version": self.active.version,
            "decision": dumps({"path": path, "at": iso(at)}),
            "at_us": at,
            "by": "routing",
        }
        note: dict[str, Any] = {
            "lead_id": lead,
            "owner": decision.owner,
            "team": decision.team,
            "previous_owner": None,
            "kind": decision.kind,
            "rule": decision.rule,
            "by": "routing",
            "at": iso(at),
            "routing_version": self.active.version,
            "path": path,
        }
        if sla is not None:
            note["sla"] = {"name": sla.name, "due_at": iso(sla.due_at_us)}
        return row, note

    def route(
        self, lead: str, episode: int, mql_at: int, facts: dict[str, Any], domain: str | None
    ) -> Decision:
        """Route an episode already stored (one that waited for a routing, or a lead moved
        back to mql by hand) and write it at once, with its SLA deadline."""
        decision, sla = self.decide(lead, mql_at, facts, domain)
        if sla is not None:
            self.conn.execute(
                sa.update(t.mql_episodes)
                .where(t.mql_episodes.c.id == episode)
                .values(sla_name=sla.name, sla_due_at_us=sla.due_at_us)
            )
        _row, note = self._assignment(lead, decision, sla)
        assert self.active is not None
        assign(
            self.conn,
            self.notifier,
            lead=lead,
            episode_id=episode,
            owner=decision.owner,
            team=decision.team,
            rule=decision.rule,
            kind=decision.kind,
            routing_version=self.active.version,
            decision={"path": note["path"], "at": note["at"]},
            at_us=self.now_us,
            by="routing",
            sla=note.get("sla"),
        )
        self.flush()
        return decision

    def prepare(self, traits: Mapping[str, Mapping[str, Any]]) -> None:
        """Before the first MQL: read what routing needs, with the account owners of every
        company domain among these leads, in one round trip. Called again for a later batch
        of the same transaction (an import's), it reads the owners of its new domains."""
        if self.active is None:
            return
        domains = {email_domain(x) for x in traits.values()}
        wanted = [d for d in sorted(d for d in domains if d) if d not in FREE_MAIL]
        if self._state is None:
            self._load(wanted)
            return
        new = [d for d in wanted if d not in self._prefetched and d not in self._accounts]
        if new:
            accounts = read_state(self.conn, [], new, OPEN_STAGES).accounts
            self._prefetched.update({d: accounts.get(d, []) for d in new})

    def _load(self, domains: list[str]) -> HandoffState:
        assert self.active is not None
        members = sorted(
            {
                m
                for team in self.active.routing.teams.values()
                if team.max_open_mqls
                for m in team.members
            }
        )
        # other processes route too: one at a time reads and moves the round robin and the
        # open MQLs (held to the commit; PostgreSQL only, SQLite has one writer)
        locks.lock_handoff(self.conn)
        state = read_state(self.conn, members, domains, OPEN_STAGES)
        self._state = state
        self._rr_stored = set(state.last_member)
        self._prefetched.update({d: state.accounts.get(d, []) for d in domains})
        self.notifier.preload(state.hooks)
        return state

    def state(self) -> HandoffState:
        return self._state if self._state is not None else self._load([])

    def account_owner(self, lead: str, domain: str | None) -> str | None:
        if domain is None or domain in FREE_MAIL:
            return None
        if domain in self._accounts:  # assigned in this transaction
            return self._accounts[domain]
        if domain in self._prefetched:
            return next((o for lead_id, o in self._prefetched[domain] if lead_id != lead), None)
        self._accounts[domain] = account_owner(self.conn, lead, domain)
        return self._accounts[domain]

    def reps(self) -> dict[str, RepState]:
        return self.state().away

    def last_members(self) -> dict[str, str | None]:
        return self.state().last_member

    def open_mqls(self, routing: Routing) -> dict[str, int]:
        """Open MQLs (owned leads at mql or sal) of the members of teams with a cap."""
        return self.state().open_mqls


def route_unowned(assigner: Assigner) -> int:
    """Route the open MQL episodes nobody owns (they became MQLs while no routing was active),
    as they would have been routed: on their stored traits and score. How many."""
    rows = assigner.conn.execute(
        sa.select(
            t.mql_episodes.c.id,
            t.mql_episodes.c.mql_at_us,
            t.leads.c.lead_id,
            t.leads.c.traits,
            t.leads.c.score,
            t.leads.c.fit,
            t.leads.c.engagement,
            t.leads.c.grade,
            t.leads.c.fast_track,
        )
        .join(t.leads, t.leads.c.lead_id == t.mql_episodes.c.lead_id)
        .where(
            t.mql_episodes.c.owner.is_(None),
            t.mql_episodes.c.closed_at_us.is_(None),
            t.leads.c.owner.is_(None),
        )
        .order_by(t.mql_episodes.c.mql_at_us, t.mql_episodes.c.id)
    ).all()
    for r in rows:
        traits = loads(r.traits) or {}
        facts = stored_facts(r, traits)
        assigner.route(r.lead_id, int(r.id), int(r.mql_at_us), facts, email_domain(traits))
    return len(rows)


def crm_stage_for(routing: ActiveRouting | None, status: str) -> str:
    """The stage a CRM status maps to in the active routing's ``crm_stages``."""
    if routing is None:
        raise InvalidRequestError("no routing is active: CRM statuses are mapped by its crm_stages")
    mapping = routing.routing.crm_stages
    stage = crm_stage(routing.routing, status)
    if stage is None:
        known = ", ".join(sorted(mapping)) or "none: add crm_stages to the routing file"
        raise InvalidRequestError(f"CRM status {status!r} is not mapped; known: {known}")
    return stage
