"""A group of ingest requests written in one transaction (``group_commit``): on SQLite one after
the other, on PostgreSQL in three steps with the group's statements shared
(``_postgres_group``). One request's work is ``ingest.ingest``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from . import ingest_pg, locks
from .group_commit import Call
from .ingest import GroupLeads, IngestCall, IngestResult, event_rows, ingest, store_named
from .prepared import sent_together
from .scoring import ActiveModel, MqlHandler, mql_hooks

__all__ = ["CallFailed", "ingest_group"]


def ingest_group(
    conn: Connection,
    active: ActiveModel,
    calls: list[Call[IngestCall, IngestResult]],
    now: int,
    handoff: Callable[[], MqlHandler | None],
    *,
    apart: bool = False,
) -> None:
    """Several requests' messages, stored one request after the other in the caller's
    transaction (``group_commit``), each as ``ingest`` stores it, with a handoff of its own.

    SQLite: one request after the other, none in a savepoint of its own. A request whose work
    fails on its own raises ``CallFailed``: the caller rolls the transaction back and writes
    the group again without it (``Service._write_sqlite``), as on PostgreSQL. A savepoint
    would let the others stand without being written again, but SQLite keeps a copy of every
    page a request in a savepoint changes (about 250 for 100 messages), in a temporary file
    past 64 KiB: that cost every joined request more CPU than a failure, which is rare, costs
    the group (docs/benchmarks.md, "Two senders without savepoints"). A database error
    (``OperationalError``: a full disk, an I/O error) is raised as it is, and fails the whole
    group: the database itself is refusing.

    PostgreSQL (several processes, each writing its own groups): see ``_postgres_group``, which
    writes a lone call too; ``apart``: each call with statements of its own (the group written
    again after a statement of the whole group failed)."""
    if conn.dialect.name == "postgresql":
        _postgres_group(conn, active, calls, now, handoff, apart)
        return
    for c in calls:
        with _failing(c):
            c.result = ingest(conn, active, c.work.messages, c.work.at, now, handoff())


class CallFailed(Exception):
    """One call of a group failed on its own (``error``): the group's transaction is rolled
    back, and the group written again without that call (``Service._write_ingests``; on
    SQLite ``Service._write_sqlite``).
    ``call`` None: a statement of the whole group failed (its events insert, its scores
    update), and which call's rows it was is not known: the group is written again with each
    call's statements apart (``ingest_group``'s ``apart``), which finds it."""

    def __init__(self, call: Call[IngestCall, IngestResult] | None, error: Exception) -> None:
        super().__init__(str(error))
        self.call = call
        self.error = error


def _postgres_group(
    conn: Connection,
    active: ActiveModel,
    calls: list[Call[IngestCall, IngestResult]],
    now: int,
    handoff: Callable[[], MqlHandler | None],
    apart: bool = False,
) -> None:
    """A group on PostgreSQL, in three steps:

    1. the events of every call whose messages all name their lead (no anonymous id) are
       stored, in one INSERT, before the group holds any lead's lock: a messageId stored at
       once by another transaction is waited for only while this one holds no lead (as
       ``ingest`` does alone). A messageId given by several calls belongs to the first of them
       (the others count it as a duplicate, as they would one after the other), and the rows go
       in the calls' order (the events' ids are in that order, as one INSERT per call gave them).
       They are visible to the calls before them in the group (one transaction): a call that
       scores a lead from its stored events leaves out the later calls' (``hide``), or it
       would count them, and the later call count them again;
    2. the locks of every lead (userId) and anonymous id of the whole group, and of the leads
       those anonymous ids are linked to, are taken at once, in one statement, in key order
       (``locks.lock_ingest``), before any call reads a lead. Every writer takes its leads in
       that one order, so no two groups (or a group and a lone request) wait on each other in
       a circle. The one later lock, as for a lone request, is a lead linked to one of the
       anonymous ids while the group waited (``locks.lock_leads``): it may close a circle,
       which PostgreSQL breaks by ending one transaction, and that group is written again.
       The state of every lead named by a userId is then read, once (``GroupLeads``). The
       events INSERT, the locks and this read go to PostgreSQL together, in one round trip,
       and run one after the other (``ingest_pg.store_lock_read``);
    3. each call's work, as ``ingest`` does it, under those locks, in the order they queued,
       on the group's state of its leads: within the group no call waits for another's lead,
       a lead touched by several calls is read once and its score written once, after the last
       call (one UPDATE of all the group's leads), and the group commits once. A call with an
       anonymous id stores its events here, holding the group's leads, as it does alone.

    A call that fails on its own (not ``OperationalError``, which fails the group) raises
    ``CallFailed``: the whole transaction is rolled back and the group written again without
    it (its events, stored in step 1, are not within a savepoint of its own work, and a later
    call may have counted them as its duplicates). No savepoints are needed, and none are
    paid for. A statement of the whole group that fails (not ``OperationalError``) raises
    ``CallFailed`` without a call: the group is written again ``apart``, each call storing its
    events, reading its leads and writing its scores itself, as ``ingest`` does alone."""
    named = [c for c in calls if not any(m.anonymous_id for m in c.work.messages)]
    users = {m.user_id for c in calls for m in c.work.messages if m.user_id}
    anonymous = {m.anonymous_id for c in calls for m in c.work.messages if m.anonymous_id}
    stored: dict[int, tuple[list[dict[str, Any]], set[str]]] = {}
    group = None
    claimed = _claimed(calls)
    if apart:
        for c in named:
            with _failing(c):
                stored[id(c)] = store_named(conn, c.work.messages, c.work.at, claimed[id(c)])
        locks.lock_ingest(conn, users, anonymous)
    else:
        # steps 1 and 2 and the read of the leads in one round trip, run in that order
        rows, unique, owner = _group_rows(conn, named, claimed)
        with _failing(calls[0] if len(calls) == 1 else None):
            new, locked, found, hooks = ingest_pg.store_lock_read(
                conn, unique, locks.ingest_locks(users, anonymous), sorted(users)
            )
        locks.taken(conn, locked)
        mine: dict[int, set[str]] = {key: set() for key in rows}
        for x in new:
            mine[owner[x]].add(x)
        stored = {key: (rows[key], mine[key]) for key in rows}
        group = GroupLeads(hooks=mql_hooks(hooks))
        group.keep(found, users)
    # what each call must not count: the events stored in step 1 by the calls after it
    hide: list[frozenset[str]] = []
    later: frozenset[str] = frozenset()
    for c in reversed(calls):
        hide.append(later)
        if id(c) in stored:
            later = later | stored[id(c)][1]
    hide.reverse()
    for c, hidden in zip(calls, hide, strict=True):
        with _failing(c):
            c.result = ingest(
                conn,
                active,
                c.work.messages,
                c.work.at,
                now,
                handoff(),
                stored=stored.get(id(c)),
                locked=True,
                hide=hidden,
                group=group,
                # a lone call writes the scores itself, with its last statements
                write_group=len(calls) == 1,
            )
    if group is not None and len(calls) > 1:
        # the group's last statement, with its COMMIT in the same round trip
        with _failing(None), sent_together(conn, commit=True):
            group.write(conn)


@contextmanager
def _failing(call: Call[IngestCall, IngestResult] | None) -> Iterator[None]:
    """A failure inside is ``call``'s own: ``CallFailed`` (None: a statement of the whole
    group's). A database error (``OperationalError``) fails the group as it is."""
    try:
        yield
    except OperationalError:
        raise
    except Exception as e:
        raise CallFailed(call, e) from e


def _claimed(calls: list[Call[IngestCall, IngestResult]]) -> dict[int, frozenset[str]]:
    """By call (its ``id``): the messageIds of the calls with an anonymous id before it. Those
    calls store their events in step 3, after the named calls': a named call leaves such a
    messageId to them, as it would find it stored one call after the other (a duplicate)."""
    out: dict[int, frozenset[str]] = {}
    before: frozenset[str] = frozenset()
    for c in calls:
        out[id(c)] = before
        if any(m.anonymous_id for m in c.work.messages):
            before = before | {m.message_id for m in c.work.messages}
    return out


def _group_rows(
    conn: Connection,
    calls: list[Call[IngestCall, IngestResult]],
    claimed: dict[int, frozenset[str]],
) -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]], dict[str, int]]:
    """The events rows of these calls (``store_named``'s), by call (its ``id``); the rows to
    store, each messageId once; and which call each messageId belongs to (the first that
    gives it; none for one ``claimed`` by an earlier anonymous call)."""
    dialect = conn.dialect.name
    rows: dict[int, list[dict[str, Any]]] = {}
    owner: dict[str, int] = {}
    unique: list[dict[str, Any]] = []
    for c in calls:
        key = id(c)
        rows[key] = got = event_rows(c.work.messages, {}, c.work.at, dialect)
        skip = claimed[key]
        for r in got:
            if r["message_id"] not in owner and r["message_id"] not in skip:
                owner[r["message_id"]] = key
                unique.append(r)
    return rows, unique, owner
