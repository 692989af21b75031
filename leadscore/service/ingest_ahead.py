"""What a lone PostgreSQL ingest request can work out before it holds all its leads: each lead's
score carried forward with its new events (``scoring.carry``), from the lead's state as read
while some of its leads are still held by another transaction.

A lead's carried step depends on nothing but its stored row (traits, stage, scored parts) and
the request's own messages, so it is the step the request would work out under the lock for as
long as the row is the same: the request keeps it for every lead whose row it reads back
unchanged once it holds the lead (``kept``), and ``ingest.ingest`` works out the others as
usual. Scoring the leads meanwhile takes that Python out of the time the request holds its
leads, during which another process waits for them (``locks.try_ingest_locks``).

The leads it would re-score from their history (``rescored``) have their events read in the
round trip that takes the last locks, after them (``ReadAhead``): under the locks, they are what
``ingest.ingest`` would read, a round trip later.

Only the steps are worked out here: everything that writes or decides something (an MQL, the
handoff, the rows) is done under the locks, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import Event
from ..engine.incremental import Step
from . import scoring
from .common import loads
from .events import event_from_row
from .messages import Message
from .scoring import ActiveModel

__all__ = ["Ahead", "ReadAhead", "carry_ahead", "kept"]

#: the message types that change no lead's traits and link nothing (``ingest._UNLINKED``)
_UNLINKED = frozenset(("track", "page", "screen"))

#: a lead's row as ``ingest_pg.lead_state`` reads it
Row = tuple[Any, ...]


@dataclass
class Ahead:
    """What ``carry_ahead`` worked out."""

    #: by lead: the row its step was worked out from, and the step
    steps: dict[str, tuple[Row, Step | None]]
    #: the other leads the request touches, which it would re-score from their history
    rescored: list[str]
    #: the instant their events would be read from (``events_for``'s ``at``)
    since: int


def carry_ahead(
    active: ActiveModel,
    messages: list[Message],
    new: Iterable[str],
    found: Iterable[Row],
    at: int,
) -> Ahead:
    """By lead: the row it was worked out from, and its step carried forward with this request's
    new messages (``new``: their messageIds), as ``ingest.ingest`` would carry it on that row
    (None: it would re-score the lead from its history). Only for messages that all name their
    lead (a userId, no anonymous id), and only leads whose traits none of them changes (a
    track, page or screen only) and that ``ingest`` would carry (``quick``). The other leads
    the messages touch, or those with no step, are ``rescored``."""
    if any(m.user_id is None or m.anonymous_id for m in messages):
        return Ahead({}, [], at)
    state = {row[0]: row for row in found}
    skip = {m.user_id for m in messages if m.type not in _UNLINKED}
    left = set(new)
    fresh = []
    for m in messages:  # the first copy of each new messageId, as ``ingest`` counts them
        if m.message_id in left:
            left.discard(m.message_id)
            fresh.append(m)
    fresh.sort(key=lambda m: m.ts_us)
    touched: dict[str, list[int]] = {}
    arrived: dict[str, list[Message]] = {}
    for m in fresh:
        lead = m.user_id
        assert lead is not None
        touched.setdefault(lead, []).append(m.ts_us)
        if m.event is not None:
            arrived.setdefault(lead, []).append(m)
    version = active.version
    out: dict[str, tuple[Row, Step | None]] = {}
    for lead, times in touched.items():
        row = state.get(lead)
        if lead in skip or row is None:
            continue
        _, traits, stage, parts, scored_at, due = row
        if parts is None or scored_at is None:
            continue
        stored = loads(parts)
        if stored.get("v") != version or (due is not None and at >= due):
            continue
        events = arrived.get(lead, [])
        if any(m.ts_us > at for m in events):
            continue
        step = scoring.carry(
            active,
            dict(loads(traits) or {}),
            stage,
            (stored, scored_at, due),
            False,
            events,
            times,
            at,
        )
        out[lead] = (row, step)
    rescored = sorted(x for x in touched if x not in out or out[x][1] is None)
    since = min([at, *(min(touched[x]) for x in rescored)])
    return Ahead(out, rescored, since)


def kept(
    ahead: Mapping[str, tuple[Row, Step | None]], found: Iterable[Row]
) -> dict[str, Step | None]:
    """Of the steps worked out ahead, those whose lead's row (``found``: as read under its lock)
    is the one they were worked out from."""
    rows = {row[0]: row for row in found}
    return {lead: step for lead, (row, step) in ahead.items() if rows.get(lead) == row}


class ReadAhead:
    """The events of the leads ``ids`` that can count at ``at`` or later (``events_query``'s
    rows), read once the request held every lock."""

    def __init__(self, ids: Iterable[str], at: int, rows: Sequence[tuple[Any, ...]]) -> None:
        self.ids = frozenset(ids)
        self.at = at
        self.rows = rows

    def events(
        self, window: int | None, ids: Iterable[str], at: int
    ) -> dict[str, list[Event]] | None:
        """``events_for(conn, window, ids, at)`` (no messageId hidden) out of the rows read,
        the same lists in the same order; None when they do not hold all of it."""
        want = set(ids)
        if at < self.at or not want <= self.ids:
            return None
        since = None if window is None else at - window
        out: dict[str, list[Event]] = {}
        for lead, name, ts_us, props in self.rows:
            if lead in want and (since is None or ts_us >= since):
                out.setdefault(lead, []).append(event_from_row(name, ts_us, props))
        return out
