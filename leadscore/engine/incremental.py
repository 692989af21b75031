"""Keeping a lead's score current as its events arrive, without re-reading its history each
time. Pure: the live service stores the parts and asks here what to do with them.

A score's *parts* are what it is made of at an instant: the fit rules that hold, each engagement
rule's decayed sum before its cap, and whether any event counted for it. Between events only
decay changes them, so the parts decayed to a later instant and finished give the score then;
a new event adds its points; a lead whose events could leave the window, or whose future events
become due, is re-scored from its events at ``rescore_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..model.schema import Model
from .scorer import Event, LeadScore, Scorer, decay, half_life_s, round2

__all__ = [
    "Parts",
    "Step",
    "advance",
    "advance_from",
    "can_carry",
    "could_qualify",
    "make_parts",
    "may_have_qualified",
    "mql_reason",
    "rescore",
    "rescore_at",
]


@dataclass(frozen=True)
class Parts:
    """A score's parts at ``at_us``."""

    held: tuple[int, ...]
    sums: tuple[float, ...]
    counted: tuple[bool, ...]
    at_us: int

    def decayed_to(self, model: Model, at_us: int) -> Parts:
        """The parts at a later instant: only decay changes them (an earlier one: unchanged)."""
        if at_us <= self.at_us:
            return self
        f = decay(at_us - self.at_us, model)
        sums = self.sums if f == 1.0 else tuple(s * f for s in self.sums)
        return Parts(self.held, sums, self.counted, at_us)

    def score(self, scorer: Scorer, at_us: int | None = None) -> LeadScore:
        """The score these parts give, decayed to ``at_us`` first when given."""
        p = self if at_us is None else self.decayed_to(scorer.model, at_us)
        return scorer.finish(p.held, list(p.sums), list(p.counted))


@dataclass(frozen=True)
class Step:
    """A lead's new parts and score at ``parts.at_us``, when they stop being exact, and, when it
    became an MQL in this step, the instant and the score it qualified with."""

    parts: Parts
    score: LeadScore
    rescore_at: int | None
    mql_at: int | None = None
    mql_score: LeadScore | None = None


def rescore_at(scorer: Scorer, events: Iterable[Event], at_us: int) -> int | None:
    """When parts scored at ``at_us`` from these events stop being exact: the first instant an
    event leaves the window, or a future one becomes due. None: never."""
    window = scorer._window_us
    keys = scorer.event_keys
    soonest: int | None = None
    for ev in events:
        if ev.key not in keys:
            continue
        if ev.ts_us > at_us:
            when = ev.ts_us
        elif window is not None:
            when = ev.ts_us + window + 1
        else:
            continue
        soonest = when if soonest is None else min(soonest, when)
    return soonest


def may_have_qualified(model: Model, now: LeadScore, since_us: int, at_us: int) -> bool:
    """Whether a lead that is not an MQL at ``at_us`` may have been one at some instant since
    ``since_us``: engagement then was at most engagement now undone by the decay in between
    (with no negative engagement rules, the only thing that lowers a score over time)."""
    return _may_have_qualified(
        model,
        any(r.points < 0 for r in model.engagement_rules),
        half_life_s(model),
        now,
        since_us,
        at_us,
    )


def _may_have_qualified(
    model: Model, negative: bool, half: float | None, now: LeadScore, since_us: int, at_us: int
) -> bool:
    """``may_have_qualified`` with what it reads of the model worked out once (``Scorer``)."""
    if negative:
        return True
    if model.min_fit is not None and now.fit < model.min_fit:
        return False
    # a hair over the exact inverse: a bound must not round below the truth
    undo = (1.0 + 1e-12) / decay(at_us - since_us, half) if at_us > since_us else 1.0
    return now.fit + now.engagement * undo >= model.threshold


def could_qualify(scorer: Scorer, held: Sequence[int], events: Sequence[Event]) -> bool:
    """Whether the lead could be an MQL at some instant with these events: decay only lowers
    points, so undecayed, capped points that fall short of the threshold (with no fast-track
    event) rule it out without scoring at every instant."""
    m = scorer.model
    fit = sum(m.fit_rules[i].points for i in held)
    if m.fit_max is not None:
        fit = min(fit, m.fit_max)
    if m.min_fit is not None and fit < m.min_fit:
        return False
    # how many events of each name: counted once, not once per rule
    n_of: dict[str, int] = {}
    for ev in events:
        n_of[ev.key] = n_of.get(ev.key, 0) + 1
    if any(r.fast_track and r.event_key in n_of for r in m.engagement_rules):
        return True
    best = 0.0
    for r in m.engagement_rules:
        if r.event_key in n_of and r.points > 0:
            n = n_of[r.event_key]
            best += min(r.points * n, r.cap) if r.cap is not None else r.points * n
    if m.engagement_max is not None:
        best = min(best, m.engagement_max)
    return fit + best >= m.threshold


def mql_reason(model: Model, score: LeadScore) -> str:
    """Why a lead qualified, in words: a fast-track rule, else the score and the threshold."""
    fast_rules = {r.name for r in model.engagement_rules if r.fast_track}
    if score.fast_track and score.score < model.threshold:
        for r in score.reasons:
            if r.rule in fast_rules:
                return f"fast track: {r.rule}"
        return "fast track"
    return f"score {round2(score.score):g} reached threshold {model.threshold:g}"


def rescore(
    scorer: Scorer,
    held: Sequence[int],
    events: Sequence[Event],
    times: Iterable[int],
    at_us: int,
    qualified: bool,
    *,
    reasons: bool = True,
) -> Step:
    """A lead's score from all its events at ``at_us``. ``times``: the instants of the messages
    that touched it now; unless ``qualified`` already, it becomes an MQL at the first of them
    at which it qualifies (or, qualifying only now, at the last). ``reasons=False``: the step's
    ``score`` holds the numbers alone (``Scorer.finish``); its ``mql_score`` always has its
    reasons, as the MQL's reason is told from them."""
    if not events:
        return _without_events(scorer, held, times, at_us, qualified, reasons)
    if qualified:  # scored once: its conditions tested once
        sums, counted = scorer.engage(events, at_us)
        timed: list[tuple[int, list[tuple[int, float]]]] = []
    else:  # scored at several instants: each event's conditions tested once for all of them
        timed = [(ev.ts_us, scorer.matches(ev)) for ev in events]
        sums, counted = scorer.engage_matched(timed, at_us)
    score = scorer.finish(held, sums, counted, reasons=reasons)
    parts = make_parts(tuple(held), tuple(sums), tuple(counted), at_us)
    step = _step(parts, score, rescore_at(scorer, events, at_us), None, None)
    if qualified:
        return step
    ts_sorted = sorted(set(times))
    if score.mql or could_qualify(scorer, held, events):
        # with no rule taking points away, the score after some of the messages at an instant
        # is at most the score after all of them (a hair of rounding aside: the sums add the
        # same points in another order): an instant whose last score is short of the threshold
        # by more than that hair, with no fast-track event, has no earlier message that
        # qualified. (Not after ``at_us``: ``score``, at ``at_us``, does not count the events
        # of a later instant.) The rounding grows with the points added, not the threshold: a
        # fit of -100000 and engagement near it round by far more than a hair of a threshold 1
        n_hair = 1e-12 * (len(events) + 1)
        threshold = scorer.model.threshold
        for ts in ts_sorted:
            if ts >= at_us:  # after every message at ``at_us``: ``score``
                f_sums, f_counted, final = sums, counted, score
            else:
                f_sums, f_counted = scorer.engage_matched(timed, ts)
                final = scorer.finish(held, f_sums, f_counted, reasons=False)
            if (
                not final.mql
                and ts <= at_us
                and not scorer.negative_engagement
                and not final.fast_track
                and final.score
                + (abs(threshold) + abs(final.fit) + abs(final.engagement) + 1.0) * n_hair
                < threshold
            ):
                continue
            crossed = _first_prefix_at(scorer, timed, ts, scorer.fit_of(held))
            if crossed is not None:  # its reasons, for the MQL's reason
                return _step(parts, step.score, step.rescore_at, ts, scorer.finish(held, *crossed))
            if final.mql:
                if final is not score or not reasons:
                    final = scorer.finish(held, f_sums, f_counted)
                return _step(parts, step.score, step.rescore_at, ts, final)
    if score.mql:
        full = score if reasons else scorer.finish(held, sums, counted)
        return _step(
            parts, step.score, step.rescore_at, ts_sorted[-1] if ts_sorted else at_us, full
        )
    return step


def _without_events(
    scorer: Scorer,
    held: Sequence[int],
    times: Iterable[int],
    at_us: int,
    qualified: bool,
    reasons: bool,
) -> Step:
    """``rescore`` of a lead with no events (a new lead, or one that sent only traits): its
    engagement is nothing at every instant, so its score is the same at each of ``times``, and
    it qualifies, if at all, at the first of them."""
    n = len(scorer.model.engagement_rules)
    sums = [0.0] * n
    counted = [False] * n
    score = scorer.finish(held, sums, counted, reasons=reasons)
    parts = make_parts(tuple(held), tuple(sums), tuple(counted), at_us)
    if qualified or not score.mql:
        return _step(parts, score, None, None, None)
    full = score if reasons else scorer.finish(held, sums, counted)
    return _step(parts, score, None, min(times, default=at_us), full)


def _first_prefix_at(
    scorer: Scorer, timed: Sequence[tuple[int, list[tuple[int, float]]]], ts: int, fit: float
) -> tuple[list[float], list[bool]] | None:
    """The engagement parts at instant ``ts`` after the first message there that made the lead
    an MQL, among all but the last message at that instant, in their order; None when none
    did. Several messages can share a timestamp, and a lead qualifies at the first one that
    makes it (its reason names that score, not the score after all of them; the caller scores
    the last itself). ``timed``: each event's instant and the rules it counts for
    (``Scorer.matches``); ``fit``: ``Scorer.fit_of`` the lead's fit rules. Each message adds
    its event to the parts before it (``Scorer.engage_matched_into``): the same sums as
    scoring each afresh, in linear time however many share the instant. An event that counts
    for no rule leaves the parts as they were: asked about once."""
    same = [x for x in timed if x[0] == ts]
    if len(same) < 2:
        return None
    sums, counted = scorer.engage_matched([x for x in timed if x[0] < ts], ts)
    add = scorer.engage_matched_into
    mql_of = scorer.mql_of
    asked = False  # about the parts as they are
    for x in same[:-1]:
        if x[1]:
            add((x,), ts, sums, counted)
        elif asked:
            continue
        if mql_of(fit, sums, counted):
            return sums, counted
        asked = True
    return None


def can_carry(due: int | None, new_ts: Iterable[int], at_us: int) -> bool:
    """Whether stored parts can be carried to ``at_us``: they are not due for a re-score
    (``due``, their ``rescore_at``) and no new event is in the future."""
    return (due is None or at_us < due) and all(ts <= at_us for ts in new_ts)


def advance(
    scorer: Scorer,
    parts: Parts,
    held: Sequence[int],
    new: Sequence[Event],
    times: Iterable[int],
    at_us: int,
    due: int | None,
    qualified: bool,
    *,
    reasons: bool = True,
) -> Step | None:
    """Carry stored parts forward to ``at_us``: decay them to each new event's time, add its
    points, and decide MQL at that instant (``held``: the fit rules that hold now; ``times``: the
    instants of the other messages that touched the lead, such as trait changes; ``due``: the
    stored parts' ``rescore_at``). Exact up to floating-point rounding.

    None when the parts cannot be carried (they are due for a re-score, a new event is in the
    future) or a late event may have made the lead an MQL at an earlier instant: only its whole
    history can tell when, so the caller re-scores it with :func:`rescore`. ``reasons=False``:
    the step's ``score`` holds the numbers alone, as in :func:`rescore`."""
    return advance_from(
        scorer,
        parts.at_us,
        list(parts.sums),
        list(parts.counted),
        held,
        new,
        times,
        at_us,
        due,
        qualified,
        reasons=reasons,
    )


def advance_from(
    scorer: Scorer,
    start: int,
    sums: list[float],
    counted: list[bool],
    held: Sequence[int],
    new: Sequence[Event],
    times: Iterable[int],
    at_us: int,
    due: int | None,
    qualified: bool,
    *,
    reasons: bool = True,
) -> Step | None:
    """:func:`advance` of the parts at ``start`` given as their sums and counted flags, lists
    that become this call's (it changes them): for a caller that reads them from storage, without
    making the ``Parts`` first (the live service, for every lead of every request)."""
    if due is not None and at_us >= due:
        return None
    for e in new:
        if e.ts_us > at_us:
            return None
    window = scorer._window_us
    half = scorer._half_life_s
    matches = scorer.matches
    clock = start
    became: tuple[int, LeadScore] | None = None
    steps: list[tuple[int, list[float], list[bool]]] = []
    times = list(times)
    timeline: list[tuple[int, Event | None]]
    # the steps, to find the instant it qualified at (unless it is qualified already)
    keep_steps = not qualified
    if len(new) == 1:
        # one event (the usual call): the other messages' instants, each once, and not the
        # event's (a message after an event at its instant changes nothing: no decay between)
        ev_ts = new[0].ts_us
        others: set[int] | None = None
        for x in times:  # usually none: the call's messages are the event alone
            if x >= start and x != ev_ts:
                others = {x for x in times if x >= start and x != ev_ts}
                break
        if others:
            timeline = sorted([(x, None) for x in others])
            # the event first at its instant: before the instants after it
            at = 0
            while at < len(timeline) and timeline[at][0] < ev_ts:
                at += 1
            timeline.insert(at, (ev_ts, new[0]))
        else:
            timeline = [(ev_ts, new[0])]
            # a lone late event: its step would be at its own instant, which is asked about
            # (``_may_have_qualified`` since it) before the steps are, and never by them
            keep_steps = keep_steps and ev_ts >= start
        times.append(ev_ts)
    else:
        at_events = {ev.ts_us for ev in new}
        # the instants of the other messages, each once, and not those of the new events: a
        # message after an event at its instant, or after another message there, changes
        # nothing (no decay between them), so it would score the same again
        others = {x for x in times if x >= start and x not in at_events}
        times += at_events
        if others or len(new) > 1:  # by instant; the events first, in their order, at each
            order = sorted(
                [(ev.ts_us, 0, i) for i, ev in enumerate(new)] + [(x, 1, 0) for x in others]
            )
            timeline = [(ts, new[i] if kind == 0 else None) for ts, kind, i in order]
        else:
            timeline = []
    # a step is kept when the sums changed since the one before: an unchanged step scores what
    # the one before it scored, so it can never be the first to qualify
    changed = True
    for ts, ev in timeline:
        if ts > clock:
            if half is not None:  # ``decay``, written out; a factor of 1 changes no sum
                f = 0.5 ** ((ts - clock) / 1e6 / half)
                sums = [x * f for x in sums]
            clock = ts
            changed = True
        if ev is not None:
            hits = matches(ev)
            ev_ts = ev.ts_us
            if window is not None and ev_ts < at_us - window:
                if hits and not qualified:
                    return None  # out of the window now, but it counted at its own time
                continue
            if ev_ts < clock:
                late = 1.0 if half is None else 0.5 ** ((clock - ev_ts) / 1e6 / half)
                for i, pts in hits:
                    sums[i] += pts * late
                    counted[i] = True
            else:
                for i, pts in hits:
                    sums[i] += pts * 1.0
                    counted[i] = True
            if hits:
                changed = True
                if window is not None:
                    expiry = ev_ts + window + 1
                    if due is None or expiry < due:
                        due = expiry
        if keep_steps and changed:
            steps.append((ts, list(sums), list(counted)))
            changed = False
    if at_us > clock and half is not None:
        f = 0.5 ** ((at_us - clock) / 1e6 / half)
        sums = [x * f for x in sums]
    score = scorer.finish(held, sums, counted) if reasons else scorer._numbers(held, sums, counted)
    if not qualified:
        model = scorer.model
        negative = scorer.negative_engagement
        late_since = None
        # a message before the stored instant (a late event, or any other message, such as a
        # trait change, or an event since out of the window): the lead, which may qualify, may
        # have qualified at it, and it becomes an MQL at the first message at which it does;
        # the parts cannot tell that instant: only its whole history can
        first = min(times) if times else start
        if first < start:
            late_since = first
            if score.mql or _may_have_qualified(model, negative, half, score, first, at_us):
                return None
        if steps and (
            score.mql
            # since the late events' instant it may not have (else it returned above)
            or (
                steps[0][0] != late_since
                and _may_have_qualified(model, negative, half, score, steps[0][0], at_us)
            )
        ):
            fit = scorer.fit_of(held)
            mql_of = scorer.mql_of
            for ts, st_sums, st_counted in steps:
                # the numbers decide; the reasons are built for the one that qualified
                if mql_of(fit, st_sums, st_counted):
                    became = (ts, scorer.finish(held, st_sums, st_counted))
                    break
        if became is None and score.mql:
            became = (max(times), score if reasons else scorer.finish(held, sums, counted))
    parts = make_parts(tuple(held), tuple(sums), tuple(counted), at_us if at_us > start else start)
    if became is not None:
        return _step(parts, score, due, became[0], became[1])
    return _step(parts, score, due, None, None)


def make_parts(
    held: tuple[int, ...], sums: tuple[float, ...], counted: tuple[bool, ...], at: int
) -> Parts:
    """``Parts(held, sums, counted, at)`` without the frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field, for every lead of every batch): the same object."""
    got = object.__new__(Parts)
    # item by item: ``update`` with keywords makes a dict of them first
    d = got.__dict__
    d["held"] = held
    d["sums"] = sums
    d["counted"] = counted
    d["at_us"] = at
    return got


def _step(
    parts: Parts,
    score: LeadScore,
    rescore_at: int | None,
    mql_at: int | None,
    mql_score: LeadScore | None,
) -> Step:
    """``Step(...)`` without the frozen dataclass's ``__init__``: the same object."""
    got = object.__new__(Step)
    d = got.__dict__  # item by item, as ``make_parts``
    d["parts"] = parts
    d["score"] = score
    d["rescore_at"] = rescore_at
    d["mql_at"] = mql_at
    d["mql_score"] = mql_score
    return got
