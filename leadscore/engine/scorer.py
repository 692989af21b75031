"""Score one lead from its traits and events at an instant, exactly as the spec says."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..model.schema import EngagementRule, FitRule, Model, leaves
from ..model.values import lookup, norm_text
from .conditions import SharedPredicate, compile_shared, compile_text, text_reader
from .traits import date_us, units_of

__all__ = [
    "Event",
    "EventContribution",
    "Explanation",
    "LeadScore",
    "Reason",
    "RuleExplanation",
    "Scorer",
    "counts",
    "decay",
    "grade_of",
    "round2",
    "to_utc",
    "us_of",
    "window_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
US_PER_DAY = 86_400_000_000


def round2(x: float) -> float:
    """Round to 2 decimals, halves away from zero, as the SQL engines' ROUND does."""
    r = math.floor(abs(x) * 100.0 + 0.5) / 100.0
    return math.copysign(r, x) if r else 0.0


def to_utc(ts: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def us_of(ts: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (to_utc(ts) - _EPOCH) // _US


def _lead_score(
    fit: float,
    engagement: float,
    score: float,
    grade: str,
    mql: bool,
    fast_track: bool,
    reasons: tuple[Reason, ...],
) -> LeadScore:
    """``LeadScore(...)`` made without the frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field, for every score of every lead): the same object."""
    got = object.__new__(LeadScore)
    # item by item: ``update`` with keywords makes a dict of them first
    d = got.__dict__
    d["fit"] = fit
    d["engagement"] = engagement
    d["score"] = score
    d["grade"] = grade
    d["mql"] = mql
    d["fast_track"] = fast_track
    d["reasons"] = reasons
    return got


def _reason(rule: str, points: float) -> Reason:
    """``Reason(rule, points)`` without the frozen dataclass's ``__init__``: the same object
    (a score's reasons are made for every MQL, ``explain`` and every score read)."""
    got = object.__new__(Reason)
    d = got.__dict__
    d["rule"] = rule
    d["points"] = points
    return got


class Event:
    """One behaviour of a lead: a track event's name (``page`` for page views), when, and properties."""

    __slots__ = ("key", "name", "properties", "timestamp", "ts_us")

    def __init__(
        self, name: str, timestamp: datetime, properties: Mapping[str, Any] | None = None
    ) -> None:
        self.name = name
        self.timestamp = to_utc(timestamp)
        self.properties: Mapping[str, Any] = properties or {}
        self.key = norm_text(name)
        self.ts_us = us_of(self.timestamp)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {self.timestamp.isoformat()}, {dict(self.properties)!r})"


@dataclass(frozen=True)
class Reason:
    rule: str
    points: float


@dataclass(frozen=True)
class LeadScore:
    """Unrounded scores and the decisions made from them."""

    fit: float
    engagement: float
    score: float
    grade: str
    mql: bool
    fast_track: bool
    reasons: tuple[Reason, ...]

    def record(self, lead_id: str) -> dict[str, Any]:
        """The output record of ``leadscore score``: numbers rounded to 2 decimals."""
        return {
            "lead_id": lead_id,
            "fit": round2(self.fit),
            "engagement": round2(self.engagement),
            "score": round2(self.score),
            "grade": self.grade,
            "mql": self.mql,
            "fast_track": self.fast_track,
            "reasons": [{"rule": r.rule, "points": round2(r.points)} for r in self.reasons],
        }


@dataclass(frozen=True)
class EventContribution:
    event: Event
    age_days: float
    points: float


@dataclass(frozen=True)
class RuleExplanation:
    rule: FitRule | EngagementRule
    matched: bool  # fit: the condition held; engagement: at least one event counted
    raw: float  # before the rule's cap
    points: float  # after the cap
    events: tuple[EventContribution, ...] = ()
    values: tuple[tuple[str, Any], ...] = ()  # fit: the traits the condition read


@dataclass(frozen=True)
class Explanation:
    score: LeadScore
    as_of: datetime
    rules: tuple[RuleExplanation, ...]
    fit_raw: float
    engagement_raw: float
    ignored_future: int = 0
    ignored_old: int = 0
    unmatched_events: int = 0
    notes: tuple[str, ...] = field(default=())


def _text_matcher(
    rules_of_model: Sequence[EngagementRule],
    rules: list[tuple[int, SharedPredicate | None, float]],
    missing: frozenset[str],
) -> Callable[[Mapping[str, Any]], list[tuple[int, float]]] | None:
    """``Scorer.matches`` of an event's rules (index, predicate, points) when every condition
    among them reads one field's text alone (``compile_text``): the text read once, then each
    rule's test of it, in the rules' order. None otherwise."""
    tests: list[tuple[int, Callable[[str | None], bool] | None, float]] = []
    paths = set()
    for i, pred, pts in rules:
        when = rules_of_model[i].when
        if pred is None or when is None:
            tests.append((i, None, pts))
            continue
        got = compile_text(when, missing)
        if got is None:
            return None
        paths.add(got[0])
        tests.append((i, got[1], pts))
    if len(paths) != 1:
        return None
    read = text_reader(paths.pop(), missing)
    # the rules by the field's text, each text tested once: a site's pages (the usual such
    # field is a page's path) are few and seen again and again, by every lead and by every
    # re-score of a lead's history. At most ``_TEXTS_KEPT`` texts of at most
    # ``_TEXT_LENGTH_KEPT`` characters, whatever clients send: about 3 MB of ASCII texts, at
    # most about 10 MB (texts with a character outside the BMP take 4 bytes a character), for
    # each such event of each parsed model version kept; the others are tested each time. A list of its own for each caller, as the tests would give.
    seen: dict[str | None, list[tuple[int, float]]] = {}

    def matches(props: Mapping[str, Any]) -> list[tuple[int, float]]:
        t = read(props)
        got = seen.get(t)
        if got is None:
            got = [(i, pts) for i, test, pts in tests if test is None or test(t)]
            if len(seen) < _TEXTS_KEPT and (t is None or len(t) <= _TEXT_LENGTH_KEPT):
                seen[t] = got
        return list(got)

    return matches


#: how many texts of a field each event's rules remember what they match (``_text_matcher``),
#: and how long each may be
_TEXTS_KEPT = 4096
_TEXT_LENGTH_KEPT = 512


def half_life_s(model: Model) -> float | None:
    """The model's half-life in seconds (None: no decay)."""
    return model.half_life_days * 86400.0 if model.half_life_days is not None else None


def window_us(model: Model) -> int | None:
    """The model's window in microseconds (None: every event counts however old)."""
    return round(model.window_days * US_PER_DAY) if model.window_days is not None else None


def decay(age_us: int, model: Model | float | None) -> float:
    """The factor an event's points are worth after ``age_us``: halved every half-life. ``model``
    is a model or its half-life in seconds (None: no decay). The one place the formula is
    written; ages are seconds / (half-life in seconds), in the same order of operations as the
    SQL engines, so all engines compute bit-identical factors."""
    half = half_life_s(model) if isinstance(model, Model) else model
    if half is None:
        return 1.0
    return float(0.5 ** ((age_us / 1e6) / half))


def counts(age_us: int, window: int | None) -> bool:
    """The window rule: an event counts from its own instant until ``window`` (microseconds)
    later, inclusive; a future event (negative age) does not count yet."""
    return age_us >= 0 and (window is None or age_us <= window)


def grade_of(model: Model, fit: float, engagement: float) -> str:
    g = model.grades
    if g is None:
        return ""
    a, b, c = g.fit
    letter = "A" if fit >= a else "B" if fit >= b else "C" if fit >= c else "D"
    one, two, three = g.engagement
    digit = (
        "1"
        if engagement >= one
        else "2"
        if engagement >= two
        else "3"
        if engagement >= three
        else "4"
    )
    return letter + digit


class Scorer:
    """A model compiled once for scoring many leads."""

    def __init__(self, model: Model) -> None:
        self.model = model
        missing = frozenset(model.missing_values)
        # conditions compiled together: tested on one mapping, they read each field once
        self._fit: list[tuple[FitRule, SharedPredicate]] = [
            (r, compile_shared(r.when, missing)) for r in model.fit_rules
        ]
        self._missing = missing
        self._by_event: dict[str, list[tuple[int, SharedPredicate | None, float]]] = {}
        #: trait rules: (index, trait path, date path or None, points per unit)
        self._traits: list[tuple[int, tuple[str, ...], tuple[str, ...] | None, float]] = []
        for i, r in enumerate(model.engagement_rules):
            if r.trait_path is not None:
                self._traits.append((i, r.trait_path, r.at_path, r.points))
                continue
            pred = compile_shared(r.when, missing) if r.when is not None else None
            self._by_event.setdefault(r.event_key, []).append((i, pred, r.points))
        self._fast = [r.fast_track for r in model.engagement_rules]
        self._caps = [r.cap for r in model.engagement_rules]
        self._window_us = window_us(model)
        self._half_life_s = half_life_s(model)
        self.event_keys = frozenset(self._by_event)
        #: ``matches`` of the events whose rules have no condition: the same for every event
        self._unconditional = {
            key: [(i, pts) for i, _, pts in rules]
            for key, rules in self._by_event.items()
            if all(pred is None for _, pred, _ in rules)
        }
        #: ``matches`` of the events whose rules' conditions all read one field's text: that
        #: text read once, then each rule's test of it
        self._by_text: dict[str, Callable[[Mapping[str, Any]], list[tuple[int, float]]]] = {}
        for key, rules in self._by_event.items():
            if key not in self._unconditional:
                got = _text_matcher(model.engagement_rules, rules, missing)
                if got is not None:
                    self._by_text[key] = got
        #: what a reason is made of, by index: each fit rule's order, name and points, each
        #: engagement rule's order, name and cap (``finish``)
        self._fit_ranks = [(r.order, r.name, r.points) for r in model.fit_rules]
        self._engagement_ranks = [(r.order, r.name, r.cap) for r in model.engagement_rules]
        #: the fit rules' points, by index; the fast-track rules' indexes (for ``finish``)
        self._fit_points = [r.points for r in model.fit_rules]
        self._fast_ix = [i for i, f in enumerate(self._fast) if f]
        #: whether any engagement rule takes points away (``may_have_qualified``)
        self.negative_engagement = any(r.points < 0 for r in model.engagement_rules)
        #: what ``fit_of`` and ``mql_of`` read of the model, worked out once
        self._fit_max = model.fit_max
        self._engagement_max = model.engagement_max
        self._capped = any(c is not None for c in self._caps)
        self._threshold = model.threshold
        self._min_fit = model.min_fit
        #: ``grade_of``'s bounds: fit's A, B, C, then engagement's 1, 2, 3 (None: no grades)
        g = model.grades
        self._grade_bounds = None if g is None else (*g.fit, *g.engagement)

    def score(
        self, traits: Mapping[str, Any], events: Iterable[Event], as_of: datetime
    ) -> LeadScore:
        seen: dict[Any, Any] = {}
        fit_points = [(r, r.points) for r, pred in self._fit if pred(traits, seen)]
        asof_us = us_of(as_of)
        subtotals, counted = self._engage(events, asof_us)
        self.add_traits(traits, asof_us, subtotals, counted)
        return self._finish(fit_points, subtotals, counted)

    def trait_parts(
        self, traits: Mapping[str, Any], asof_us: int
    ) -> list[tuple[int, float, int | None, float]]:
        """Each trait rule that counts: (index, units, age in microseconds or None, points
        before the cap). A rule with ``at`` counts when its date is at or before as_of and,
        with ``window_days``, inside the window; its points decay by that age."""
        out = []
        for i, path, at_path, pts in self._traits:
            units = units_of(lookup(traits, path), self._missing)
            if units is None:
                continue
            age: int | None = None
            factor = 1.0
            if at_path is not None:
                at = date_us(lookup(traits, at_path), self._missing)
                if at is None:
                    continue
                age = asof_us - at
                if not counts(age, self._window_us):
                    continue
                factor = decay(age, self._half_life_s)
            out.append((i, units, age, pts * units * factor))
        return out

    def add_traits(
        self, traits: Mapping[str, Any], asof_us: int, sums: list[float], counted: list[bool]
    ) -> None:
        """Add the trait rules' points to ``sums`` (engagement sums before caps)."""
        for i, _units, _age, pts in self.trait_parts(traits, asof_us):
            sums[i] += pts
            counted[i] = True

    def parts(
        self, traits: Mapping[str, Any], events: Iterable[Event], asof_us: int
    ) -> tuple[list[int], list[float], list[bool]]:
        """What a score is made of: the fit rules that hold (indexes), each engagement rule's
        decayed sum before its cap, and whether any event counted for it. ``finish`` turns
        these into a score; the live service keeps them and decays the sums at read time."""
        held = self.fit_held(traits)
        sums, counted = self._engage(events, asof_us)
        self.add_traits(traits, asof_us, sums, counted)
        return held, sums, counted

    def fit_held(self, traits: Mapping[str, Any]) -> list[int]:
        """Indexes of the fit rules whose condition holds for these traits."""
        seen: dict[Any, Any] = {}
        return [i for i, (_, pred) in enumerate(self._fit) if pred(traits, seen)]

    def matches(self, event: Event) -> list[tuple[int, float]]:
        """The engagement rules this event counts for (index, undecayed points), window aside."""
        rules = self._by_event.get(event.key)
        if not rules:
            return []
        unconditional = self._unconditional.get(event.key)
        if unconditional is not None:  # every rule of this event counts: no property read
            return list(unconditional)
        by_text = self._by_text.get(event.key)
        if by_text is not None:  # every condition reads one field's text: read once
            return by_text(event.properties)
        props = event.properties
        seen: dict[Any, Any] = {}
        return [(i, pts) for i, pred, pts in rules if pred is None or pred(props, seen)]

    def engage(self, events: Iterable[Event], asof_us: int) -> tuple[list[float], list[bool]]:
        """Each engagement rule's decayed sum before its cap, and whether any event counted."""
        return self._engage(events, asof_us)

    def finish(
        self,
        held: Iterable[int],
        sums: list[float],
        counted: list[bool],
        *,
        reasons: bool = True,
    ) -> LeadScore:
        """The score from ``parts`` (sums may have been decayed further since). With
        ``reasons=False`` only the numbers (fit, engagement, score, grade, MQL, fast track),
        computed by the same arithmetic, and ``reasons`` left empty: for a caller that stores
        the numbers alone, without building and sorting the ranked reasons on every score."""
        if type(held) is not list and type(held) is not tuple:
            held = list(held)  # read twice below: a one-pass iterable once, first
        numbers = self._numbers(held, sums, counted)
        if not reasons:
            return numbers
        # the reasons ranked by points away from zero, then by the rules' order in the file:
        # each decorated with its place too, the tuples sort alone as ``_finish``'s stable sort
        # by that key does (no key function called per reason; an MQL's score, ``explain``
        # and every score read build them)
        ranked: list[tuple[float, int, int, float, str]] = []
        k = 0
        fit_ranks = self._fit_ranks
        for i in held:
            order, name, p = fit_ranks[i]
            if p != 0:
                ranked.append((-abs(p), order, k, p, name))
            k += 1
        for (order, name, cap), s in zip(self._engagement_ranks, sums, strict=True):
            if cap is not None and cap < s:  # ``min(s, cap)``
                s = cap
            if s != 0:
                ranked.append((-abs(s), order, k, s, name))
            k += 1
        ranked.sort()
        return _lead_score(
            numbers.fit,
            numbers.engagement,
            numbers.score,
            numbers.grade,
            numbers.mql,
            numbers.fast_track,
            tuple([_reason(name, p) for _, _, _, p, name in ranked]),
        )

    def fit_of(self, held: Iterable[int]) -> float:
        """Fit from the fit rules that hold (indexes, in ``held``'s order), lowered to
        ``fit.max``: the arithmetic of ``finish``."""
        points = self._fit_points
        fit: float = sum([points[i] for i in held])
        if self._fit_max is not None and fit > self._fit_max:
            fit = self._fit_max
        return fit

    def engagement_of(self, sums: Sequence[float]) -> float:
        """Engagement from the sums before caps (in the rules' order), each lowered to its
        cap and the total to ``engagement.max``: the arithmetic of ``finish``."""
        caps = self._caps
        if len(sums) != len(caps):
            raise ValueError(f"{len(sums)} sums for {len(caps)} engagement rules")
        if self._capped:
            engagement: float = sum(
                [s if cap is None or s <= cap else cap for s, cap in zip(sums, caps, strict=True)]
            )
        else:  # the same sums in the same order
            engagement = sum(sums)
        if self._engagement_max is not None and engagement > self._engagement_max:
            engagement = self._engagement_max
        return engagement

    def mql_of(self, fit: float, sums: Sequence[float], counted: Sequence[bool]) -> bool:
        """``finish(held, sums, counted).mql`` for ``fit == fit_of(held)``, without building
        the score: the same arithmetic, so the same decision. (The fit gate and a fast-track
        rule first: either decides without the engagement.)"""
        if self._min_fit is not None and not fit >= self._min_fit:
            return False
        for i in self._fast_ix:
            if counted[i]:
                return True
        return fit + self.engagement_of(sums) >= self._threshold

    def _numbers(self, held: Iterable[int], sums: list[float], counted: list[bool]) -> LeadScore:
        """``_finish``'s numbers without the rules: the same sums in the same order
        (fit points in ``held``'s order, engagement subtotals in the rules' order), so the same
        floating-point results."""
        # ``fit_of`` and ``engagement_of``, written out: this runs for every lead of every batch
        points = self._fit_points
        fit: float = sum([points[i] for i in held])
        if self._fit_max is not None and fit > self._fit_max:
            fit = self._fit_max
        caps = self._caps
        if len(sums) != len(caps):
            raise ValueError(f"{len(sums)} sums for {len(caps)} engagement rules")
        engagement: float
        if self._capped:
            # (lengths checked above)
            engagement = sum(
                [s if cap is None or s <= cap else cap for s, cap in zip(sums, caps, strict=False)]
            )
        else:  # the same sums in the same order
            engagement = sum(sums)
        if self._engagement_max is not None and engagement > self._engagement_max:
            engagement = self._engagement_max
        fast = False
        for i in self._fast_ix:
            if counted[i]:
                fast = True
                break
        score = fit + engagement
        mql = (score >= self._threshold or fast) and (self._min_fit is None or fit >= self._min_fit)
        # ``grade_of``, with the model's bounds read once
        g = self._grade_bounds
        if g is None:
            grade = ""
        else:
            a, b, c, one, two, three = g
            grade = ("A" if fit >= a else "B" if fit >= b else "C" if fit >= c else "D") + (
                "1"
                if engagement >= one
                else "2"
                if engagement >= two
                else "3"
                if engagement >= three
                else "4"
            )
        return _lead_score(fit, engagement, score, grade, mql, fast, ())

    def _engage(self, events: Iterable[Event], asof_us: int) -> tuple[list[float], list[bool]]:
        n = len(self.model.engagement_rules)
        sums = [0.0] * n
        counted = [False] * n
        self.engage_into(events, asof_us, sums, counted)
        return sums, counted

    def engage_into(
        self, events: Iterable[Event], asof_us: int, sums: list[float], counted: list[bool]
    ) -> None:
        """Add these events' decayed points to ``sums`` (before caps) and mark the rules they
        counted for, in the events' order: ``engage`` of a list equals ``engage`` of its first
        part followed by ``engage_into`` of the rest, to the last bit."""
        by_event = self._by_event
        by_text = self._by_text
        unconditional = self._unconditional
        window = self._window_us
        half = self._half_life_s
        for ev in events:
            rules = by_event.get(ev.key)
            if rules is None:
                continue
            age = asof_us - ev.ts_us
            if not counts(age, window):
                continue
            factor = decay(age, half)
            if ev.key in by_text or ev.key in unconditional:  # ``matches``: the same rules
                for i, pts in self.matches(ev):
                    sums[i] += pts * factor
                    counted[i] = True
                continue
            props = ev.properties
            seen: dict[Any, Any] = {}
            for i, pred, pts in rules:
                if pred is None or pred(props, seen):
                    sums[i] += pts * factor
                    counted[i] = True

    def engage_matched(
        self, timed: Iterable[tuple[int, Sequence[tuple[int, float]]]], asof_us: int
    ) -> tuple[list[float], list[bool]]:
        """``engage`` of events given as their instant and the rules they count for
        (``matches``): for a caller that scores the same events at several instants, testing
        their conditions once. The same sums, to the last bit."""
        n = len(self.model.engagement_rules)
        sums = [0.0] * n
        counted = [False] * n
        self.engage_matched_into(timed, asof_us, sums, counted)
        return sums, counted

    def engage_matched_into(
        self,
        timed: Iterable[tuple[int, Sequence[tuple[int, float]]]],
        asof_us: int,
        sums: list[float],
        counted: list[bool],
    ) -> None:
        """``engage_into`` of events given as ``engage_matched`` takes them: the same
        additions in the same order (the window first, then each rule the event counts for, in
        the rules' order)."""
        window = self._window_us
        half = self._half_life_s
        # ``counts`` and ``decay`` written out, and the factor worked out once for events of
        # one age in a row: this runs over a lead's whole history for every instant it is
        # scored at, and the events of a client's queue sent at once share their instant
        last_age = None
        factor = 1.0
        for ts, hits in timed:
            if not hits:
                continue
            age = asof_us - ts
            if age < 0 or (window is not None and age > window):
                continue
            if age != last_age:
                factor = 1.0 if half is None else 0.5 ** ((age / 1e6) / half)
                last_age = age
            for i, pts in hits:
                sums[i] += pts * factor
                counted[i] = True

    def _finish(
        self,
        fit_points: list[tuple[FitRule, float]],
        sums: list[float],
        counted: list[bool],
    ) -> LeadScore:
        """The score, with its reasons, from the fit rules that hold with their points and the
        engagement sums before caps (``score``; ``finish`` works from indexes)."""
        m = self.model
        fit = sum(p for _, p in fit_points)
        if m.fit_max is not None and fit > m.fit_max:
            fit = m.fit_max
        subtotals = [
            min(s, cap) if cap is not None else s for s, cap in zip(sums, self._caps, strict=True)
        ]
        engagement = sum(subtotals)
        if m.engagement_max is not None and engagement > m.engagement_max:
            engagement = m.engagement_max
        fast = any(c and f for c, f in zip(counted, self._fast, strict=True))
        score = fit + engagement
        mql = (score >= m.threshold or fast) and (m.min_fit is None or fit >= m.min_fit)
        grade = grade_of(m, fit, engagement)
        contributions: list[tuple[float, int, str]] = [
            (p, r.order, r.name) for r, p in fit_points if p != 0
        ]
        contributions += [
            (s, r.order, r.name)
            for r, s in zip(m.engagement_rules, subtotals, strict=True)
            if s != 0
        ]
        contributions.sort(key=lambda c: (-abs(c[0]), c[1]))
        return _lead_score(
            fit,
            engagement,
            score,
            grade,
            mql,
            fast,
            tuple([_reason(name, p) for p, _, name in contributions]),
        )

    def explain(
        self, traits: Mapping[str, Any], events: Iterable[Event], as_of: datetime
    ) -> Explanation:
        """The score plus, per rule, what matched and which events counted for how much."""
        m = self.model
        asof_us = us_of(as_of)
        evs = list(events)
        result = self.score(traits, evs, as_of)
        rules: list[RuleExplanation] = []
        fit_raw = 0.0
        seen: dict[Any, Any] = {}
        for r, pred in self._fit:
            hit = pred(traits, seen)
            fields = sorted({leaf.field for leaf in leaves(r.when)})
            values = tuple((f, lookup(traits, tuple(f.split(".")))) for f in fields)
            fit_raw += r.points if hit else 0.0
            pts = r.points if hit else 0.0
            rules.append(RuleExplanation(r, hit, pts, pts, values=values))
        future = old = unmatched = 0
        per_rule: dict[int, list[EventContribution]] = {}
        for ev in evs:
            age = asof_us - ev.ts_us
            if not counts(age, self._window_us):
                future += age < 0
                old += age >= 0
                continue
            hit_any = False
            ev_seen: dict[Any, Any] = {}
            for i, epred, pts in self._by_event.get(ev.key, ()):
                if epred is None or epred(ev.properties, ev_seen):
                    factor = decay(age, self._half_life_s)
                    per_rule.setdefault(i, []).append(
                        EventContribution(ev, age / US_PER_DAY, pts * factor)
                    )
                    hit_any = True
            unmatched += not hit_any
        eng_raw = 0.0
        from_traits = {i: pts for i, _u, _a, pts in self.trait_parts(traits, asof_us)}
        for i, er in enumerate(m.engagement_rules):
            if er.trait_path is not None:
                raw = from_traits.get(i, 0.0)
                capped = min(raw, er.cap) if er.cap is not None else raw
                eng_raw += capped
                read = [(er.trait or "", lookup(traits, er.trait_path))]
                if er.at is not None and er.at_path is not None:
                    read.append((er.at, lookup(traits, er.at_path)))
                rules.append(RuleExplanation(er, i in from_traits, raw, capped, values=tuple(read)))
                continue
            contribs = per_rule.get(i, [])
            raw = sum(c.points for c in contribs)
            capped = min(raw, er.cap) if er.cap is not None else raw
            eng_raw += capped
            rules.append(RuleExplanation(er, bool(contribs), raw, capped, events=tuple(contribs)))
        rules.sort(key=lambda x: x.rule.order)
        return Explanation(
            score=result,
            as_of=to_utc(as_of),
            rules=tuple(rules),
            fit_raw=fit_raw,
            engagement_raw=eng_raw,
            ignored_future=future,
            ignored_old=old,
            unmatched_events=unmatched,
        )
