"""Ingest: store a call's messages (each once, by messageId), link anonymous ids to leads, merge
traits, and bring every lead the call touched up to date, in the caller's transaction.

The working state of one call is one ``Batch`` object, passed explicitly; the calls of a
PostgreSQL group share the state of their leads (``GroupLeads``). Writing several calls in one
transaction is ``ingest_groups``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..engine import Event
from ..engine.scorer import window_us
from ..engine.segment import Identities, merge_traits
from ..store import schema as t
from . import ingest_pg, locks, scoring
from .accounts import email_domain
from .common import dumps, json_param, loads
from .events import events_for
from .messages import Message
from .prepared import Prepared, json_ids, sent_together
from .scoring import ActiveModel, MqlHandler, Parts, Qualifier

__all__ = [
    "Batch",
    "GroupLeads",
    "IngestCall",
    "IngestResult",
    "event_rows",
    "ingest",
    "store_named",
    "write_scores",
]


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)
    new_mqls: list[str] = field(default_factory=list)
    #: ``lead.mql`` notifications queued in the outbox (``lead.assigned`` ones come with routing)
    notified: int = 0


@dataclass(frozen=True)
class IngestCall:
    """One request's checked messages and when they were received."""

    messages: list[Message]
    at: int


@dataclass
class Batch:
    """What one ingest call works with, inside its transaction."""

    conn: Connection
    active: ActiveModel
    at: int
    dialect: str
    qualifier: Qualifier
    #: stored parts of the leads read, by lead
    parts: dict[str, Parts] = field(default_factory=dict)
    #: leads that gained earlier events through a new identity link: re-scored from history
    relinked: set[str] = field(default_factory=set)
    #: leads whose traits changed in this call: their fit is decided again
    changed: set[str] = field(default_factory=set)
    #: lead -> timestamps of the messages that touched it
    touched: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class GroupLeads:
    """The leads of a PostgreSQL group (``ingest_group``), read once under the group's locks and
    kept current in memory as each call changes them: a call reads its leads here, and the next
    call sees what the one before it made of them (traits, stage, scored parts), as it would
    read them back from the database. The scores are written once, at the end of the group (the
    last row of each lead); traits, new leads and new MQLs' stages are written by the call that
    makes them, as nothing else of the group reads a lead's score from the database while the
    handoff may read its e-mail domain, stage and owner."""

    #: lead -> (traits, stage), of the leads read or created
    leads: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    #: their stored parts, as ``Batch.parts``
    parts: dict[str, Parts] = field(default_factory=dict)
    #: leads read and not found: the first call that needs one creates it
    absent: set[str] = field(default_factory=set)
    #: the score rows to write, by lead
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the webhooks subscribed to ``lead.mql`` (``Qualifier.hooks``), once one call read them
    hooks: list[int] | None = None

    def read(self, conn: Connection, ids: Iterable[str]) -> None:
        """The stored state of these leads (those not held yet), in one read."""
        ids = sorted({x for x in ids if x not in self.leads and x not in self.absent})
        if ids:
            self.keep(ingest_pg.lead_state(conn, ids), ids)

    def keep(self, found: Iterable[tuple[Any, ...]], ids: Iterable[str]) -> None:
        """The leads ``ids`` as read (``ingest_pg.lead_state``'s rows, ``found``)."""
        for lead, traits, stage, parts, scored_at, rescore_at in found:
            self.leads[lead] = (dict(loads(traits) or {}), stage)
            if parts is not None and scored_at is not None:
                self.parts[lead] = (loads(parts), scored_at, rescore_at)
        self.absent.update(x for x in ids if x not in self.leads)

    def write(self, conn: Connection) -> None:
        """The scores, before the group commits."""
        _UPDATE_SCORES.run(conn, list(self.scores.values()))
        self.scores = {}


def ingest(
    conn: Connection,
    active: ActiveModel,
    messages: list[Message],
    at: int,
    now: int,
    handoff: MqlHandler | None = None,
    *,
    stored: tuple[list[dict[str, Any]], set[str]] | None = None,
    locked: bool = False,
    hide: frozenset[str] = frozenset(),
    group: GroupLeads | None = None,
    write_group: bool = False,
) -> IngestResult:
    """Store valid messages and update every lead they touch, in the caller's transaction;
    ``handoff`` routes the leads that become MQLs. ``stored``: the events of messages that all
    name their lead, stored already (``store_named``); ``locked``: the transaction holds the
    locks of every lead and anonymous id of ``messages`` already (``ingest_group``); ``hide``:
    messageIds of events stored already by requests written after this one, which it must not
    count; ``group``: the state of the leads of the group this call belongs to, which it reads
    and keeps current instead of reading and writing them itself (its scores are written with
    the group's; ``write_group``: by this call, with its last statements and the COMMIT, as
    the group's one call)."""
    dialect = conn.dialect.name
    res = IngestResult()
    b = Batch(conn, active, at, dialect, Qualifier(conn, dialect, now, handoff=handoff))
    if group is not None:
        b.qualifier.hooks = group.hooks
    msgs = messages
    anonymous: set[str | None] = {m.anonymous_id for m in msgs if m.anonymous_id}
    users = {m.user_id for m in msgs if m.user_id}
    links: dict[str, str] = {}
    if anonymous:
        # an event's lead may come from a link: the links are read under the locks
        if not locked:
            locks.lock_ingest(conn, users, anonymous)  # PostgreSQL
        links = _identities(conn, anonymous)
        locks.lock_leads(conn, links.values())  # a link made while it waited for the locks
        rows = event_rows(msgs, links, at, dialect)
        inserted = _insert_events(conn, rows)
    else:
        # every message names its lead: stored before the leads' locks are taken, so that a
        # request waiting for a lead another one holds has its events written meanwhile, and
        # the leads are held for less time. Nothing of a lead is read before its lock; a
        # messageId stored at once by another request waits for that one's commit, and no
        # request waits so while it holds a lead's lock.
        rows, inserted = stored if stored is not None else store_named(conn, msgs, at)
        inserted = set(inserted)  # (taken apart below)
        if not locked:
            locks.lock_ingest(conn, users, ())  # PostgreSQL
    res.accepted = len(inserted)
    res.duplicates = len(rows) - len(inserted)
    fresh = []
    # the leads the new messages name, each first seen at its first message's own time: the
    # clock MQLs are dated by
    first: dict[str, int] = {}
    for m, r in zip(msgs, rows, strict=True):
        if m.message_id in inserted:  # new, and the first copy within this request
            inserted.discard(m.message_id)
            lead = r["lead_id"]
            fresh.append((m, lead))
            ts = m.ts_us
            if lead is not None and (lead not in first or ts < first[lead]):
                first[lead] = ts
            user = m.user_id
            if user is not None and user != lead and (user not in first or ts < first[user]):
                first[user] = ts
    touched = b.touched
    arrived: dict[str, list[Message]] = {}  # lead -> its new scored events
    leads = _load_leads(b, set(first), first, group)
    b.qualifier.traits = {k: v[0] for k, v in leads.items()}
    b.qualifier.stages = {k: v[1] for k, v in leads.items()}
    ids = Identities(links)
    changed = b.changed
    for m, lead in sorted(fresh, key=lambda x: x[0].ts_us):
        if m.type in _UNLINKED:  # no link, no traits: its lead is its userId if it has one
            lead = m.user_id
            if lead is None:
                lead = ids.take(m)
                if lead is None:
                    continue
        else:
            pair = m.link
            if pair is not None:
                _link(b, pair[0], pair[1], m.ts_us)
            lead = ids.take(m)  # the Segment rules: first link wins
            if lead is None:
                continue
            if merge_traits(leads[lead][0], m):
                changed.add(lead)
        touched.setdefault(lead, []).append(m.ts_us)
        if m.event is not None:
            arrived.setdefault(lead, []).append(m)
    if b.changed:
        _UPDATE_TRAITS.run(
            conn,
            [
                {
                    "b_id": x,
                    "traits": json_param(leads[x][0], dialect),
                    "email_domain": email_domain(leads[x][0]),
                    "updated_at_us": at,
                }
                for x in b.changed
            ],
        )
    missing = [x for x in touched if x not in leads]
    if missing:  # linked through identities only
        more = _load_leads(b, set(missing), {x: min(touched[x]) for x in missing}, group)
        leads.update(more)
        b.qualifier.traits.update({k: v[0] for k, v in more.items()})
        b.qualifier.stages.update({k: v[1] for k, v in more.items()})
    # leads whose stored parts can simply be carried forward; the rest are re-scored
    # from all their events
    # (``scoring.can_advance``, written out: it runs for every lead of every request)
    version = active.version
    stored_parts = b.parts
    quick = set()
    for lead in touched:
        kept = stored_parts.get(lead)
        if kept is None or lead in b.relinked or kept[0].get("v") != version:
            continue
        due = kept[2]
        if due is not None and at >= due:
            continue
        for m in arrived.get(lead, ()):
            if m.ts_us > at:  # an event in the future
                break
        else:
            quick.add(lead)
    # the quick ones first, without writing: a late event may send one to its history too
    steps: dict[str, Any] = {}
    for lead in sorted(quick):
        traits, stage = leads[lead]
        step = scoring.carry(
            active,
            traits,
            stage,
            b.parts[lead],
            lead in b.changed,
            arrived.get(lead, []),
            touched[lead],
            at,
        )
        if step is not None:
            steps[lead] = step
    # every lead re-scored from its history: their events in one read
    full = sorted(set(touched) - set(steps))
    events: dict[str, list[Event]] = {}
    if full:
        earliest = min(min(touched[x]) for x in full)
        events = events_for(conn, window_us(active.model), full, min(earliest, at), hide)
    updates = []
    for lead in sorted(touched):  # in lead order, as MQLs are routed
        traits, stage = leads[lead]
        step = steps.get(lead)
        if step is not None:
            values, qualified = scoring.apply(b.qualifier, active, lead, step, at)
        else:
            # the fit of a lead whose traits did not change: its stored parts' (as ``carry``)
            kept = stored_parts.get(lead)
            held = (
                kept[0]["h"]
                if kept is not None and lead not in b.changed and kept[0].get("v") == version
                else None
            )
            values, qualified = scoring.rescore(
                b.qualifier,
                active,
                lead,
                traits,
                stage,
                events.get(lead, []),
                touched[lead],
                at,
                held,
            )
        updates.append(values)  # (its lead as ``b_id``: ``scoring.apply``)
        if qualified:
            res.new_mqls.append(lead)
    if group is not None:  # what the next call of the group reads back
        stages = b.qualifier.stages
        for values in updates:
            lead = values["b_id"]
            group.scores[lead] = values
            group.leads[lead] = (leads[lead][0], stages.get(lead, leads[lead][1]))
            # the parts as written (their arrays as tuples, which read as the lists stored)
            group.parts[lead] = (
                values["rule_sums"],
                values["scored_at_us"],
                values["rescore_at_us"],
            )
        group.hooks = b.qualifier.hooks
    # the scores, the new MQLs' stages and handoff: one round trip, with the COMMIT when this
    # call writes its group's scores (a lone call: nothing follows in its transaction)
    with sent_together(conn, commit=group is not None and write_group):
        if group is None:
            _UPDATE_SCORES.run(conn, updates)
        b.qualifier.finish()
        if group is not None and write_group:
            group.write(conn)
    res.notified = b.qualifier.notified
    res.leads = sorted(touched)
    return res


def store_named(
    conn: Connection, messages: list[Message], at: int, skip: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], set[str]]:
    """The events of messages that all name their lead (a userId), stored: their rows, and the
    messageIds that were new. ``skip``: messageIds left to others (not stored, not new)."""
    rows = event_rows(messages, {}, at, conn.dialect.name)
    if not skip:
        return rows, _insert_events(conn, rows)
    return rows, _insert_events(conn, [r for r in rows if r["message_id"] not in skip])


# ---------------------------------------------------------------------- storing


def write_scores(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Leads' score columns (``scoring.apply``'s values, each with its lead as ``b_id``), in one
    statement on PostgreSQL and one prepared statement run over every row on SQLite."""
    _UPDATE_SCORES.run(conn, rows)


def _load_leads(
    b: Batch,
    ids: set[str],
    first: dict[str, int] | None = None,
    group: GroupLeads | None = None,
) -> dict[str, tuple[dict[str, Any], str]]:
    """Traits and stage of these leads; the ones not seen before are created, first seen at
    ``first`` (their first message's time; the time received when not given). ``group``: read
    from the group's state (from the database the first time), and kept there."""
    out: dict[str, tuple[dict[str, Any], str]] = {}
    if not ids:
        return out
    found: Sequence[Any]
    if group is not None:
        group.read(b.conn, list(ids))
        for x in ids:
            if x in group.leads:
                out[x] = group.leads[x]
                if x in group.parts:
                    b.parts[x] = group.parts[x]
        found = ()
    elif b.dialect == "sqlite":
        found = _SELECT_LEADS_SQLITE.fetch(b.conn, {"ids": dumps(sorted(ids))})
    else:
        found = ingest_pg.lead_state(b.conn, sorted(ids))
    stored_parts = b.parts
    for lead, traits, stage, parts, scored_at, rescore_at in found:
        # the text of a JSON object parses to a new dict of its own (``loads``; copied else)
        got = orjson.loads(traits) if type(traits) is str else None
        out[lead] = (got if type(got) is dict else dict(loads(traits) or {}), stage)
        if parts is not None and scored_at is not None:
            stored_parts[lead] = (loads(parts), scored_at, rescore_at)
    new = [x for x in ids if x not in out]
    if new:
        _INSERT_LEADS.run(
            b.conn,
            [
                {
                    "lead_id": x,
                    "traits": json_param({}, b.dialect),
                    "created_at_us": min(b.at, (first or {}).get(x, b.at)),
                    "updated_at_us": b.at,
                }
                for x in new
            ],
        )
        for x in new:
            out[x] = ({}, "lead")
            if group is not None:
                group.leads[x] = out[x]
                group.absent.discard(x)
    return out


def _insert_events(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Stores the rows whose messageId is new; returns those ids."""
    # the same messageId twice in one request: the first one counts
    seen: set[str] = set()
    unique = []
    for r in rows:
        if r["message_id"] not in seen:
            seen.add(r["message_id"])
            unique.append(r)
    if conn.dialect.name == "sqlite":
        stored = _INSERT_EVENTS.run(conn, unique)  # rows inserted: a stored messageId is skipped
        if stored == len(unique):  # the usual case: every one new, and no read
            return seen
        # some were stored before: of the request's messageIds, the new ones are the rows with
        # the highest ids, as a new row's id is above every id stored before it (the order
        # events_for reads a lead's events in relies on it too). The transaction holds
        # SQLite's one write lock (BEGIN IMMEDIATE): no one else inserted meanwhile.
        there = _SELECT_MESSAGE_IDS.fetch(conn, {"ids": dumps(sorted(seen))})
        there.sort(key=lambda r: r[1])
        return {r[0] for r in there[len(there) - stored :]} if stored else set()
    return ingest_pg.insert_events(conn, unique)


def event_rows(
    msgs: list[Message], links: dict[str, str], at: int, dialect: str
) -> list[dict[str, Any]]:
    """The events table's rows of these messages, each with its lead (its userId, else the
    lead its anonymous id is linked to)."""
    rows: list[dict[str, Any]] = []
    for m in msgs:
        lead = m.user_id or (links.get(m.anonymous_id) if m.anonymous_id else None)
        props = m.properties
        rows.append(
            {
                "message_id": m.message_id,
                "type": m.type,
                "lead_id": lead,
                "anonymous_id": m.anonymous_id,
                "event": m.event,
                "ts_us": m.ts_us,
                "received_at_us": at,
                # JSON text (on PostgreSQL to go into the batch's JSON as it is: below)
                "properties": None if props is None else dumps(props),
                "message": m.encoded if m.encoded is not None else dumps(m.raw),
            }
        )
    if dialect == "postgresql":
        fragment = ingest_pg.fragment
        for r in rows:
            r["properties"] = fragment(r["properties"])
            r["message"] = fragment(r["message"])
    return rows


def _link(b: Batch, anon: str, lead: str, ts: int) -> None:
    """Link an anonymous id to a lead; its earlier events join the lead."""
    conn = b.conn
    existing = conn.execute(
        sa.select(t.identities.c.lead_id).where(t.identities.c.anonymous_id == anon)
    ).scalar_one_or_none()
    if existing is None:
        conn.execute(
            sa.insert(t.identities).values(anonymous_id=anon, lead_id=lead, linked_at_us=b.at)
        )
    elif existing != lead:
        return  # first link wins: an anonymous id belongs to one lead
    moved = conn.execute(
        sa.update(t.events)
        .where(t.events.c.anonymous_id == anon, t.events.c.lead_id.is_(None))
        .values(lead_id=lead)
    ).rowcount
    if moved:
        b.touched.setdefault(lead, []).append(ts)
        b.relinked.add(lead)


def _identities(conn: Connection, anon_ids: set[str | None]) -> dict[str, str]:
    ids = [a for a in anon_ids if a]
    if not ids:
        return {}
    if conn.dialect.name == "postgresql":
        return dict(ingest_pg.identities(conn, ids))
    rows = conn.execute(
        sa.select(t.identities.c.anonymous_id, t.identities.c.lead_id).where(
            t.identities.c.anonymous_id.in_(ids)
        )
    ).all()
    return {a: lead for a, lead in rows}


#: the message types that link no anonymous id and merge no traits (``Identities.take``,
#: ``merge_traits``): their lead is their userId, else their anonymous id's
_UNLINKED = frozenset(("track", "page", "screen"))

# statements built once: the ingest path runs them for every request
_LEAD_STATE = sa.select(
    t.leads.c.lead_id,
    t.leads.c.traits,
    t.leads.c.stage,
    t.leads.c.rule_sums,
    t.leads.c.scored_at_us,
    t.leads.c.rescore_at_us,
)
_SELECT_LEADS_SQLITE = Prepared(
    _LEAD_STATE.where(t.leads.c.lead_id.in_(sa.select(json_ids("ids").c.value)))
)
_SELECT_MESSAGE_IDS = Prepared(  # SQLite
    sa.select(t.events.c.message_id, t.events.c.id).where(
        t.events.c.message_id.in_(sa.select(json_ids("ids").c.value))
    )
)
_EVENT_COLUMNS = (
    "message_id",
    "type",
    "lead_id",
    "anonymous_id",
    "event",
    "ts_us",
    "received_at_us",
    "properties",
    "message",
)
_INSERT_EVENTS = Prepared(
    sqlite_insert(t.events).on_conflict_do_nothing(index_elements=["message_id"]), _EVENT_COLUMNS
)
_INSERT_LEADS = Prepared(
    sa.insert(t.leads), ("lead_id", "traits", "created_at_us", "updated_at_us")
)
_UPDATE_TRAITS = Prepared.update(t.leads, "lead_id", ("traits", "email_domain", "updated_at_us"))
_SCORE_COLUMNS = (
    "fit",
    "engagement",
    "score",
    "grade",
    "mql",
    "fast_track",
    "rule_sums",
    "scored_at_us",
    "model_version",
    "rescore_at_us",
    "updated_at_us",
)
_UPDATE_SCORES = Prepared.update(t.leads, "lead_id", _SCORE_COLUMNS)
