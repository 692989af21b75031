"""The ingest path's shortcuts give the plain computation's answers, to the last bit: conditions
that share a field's text, qualifying at an instant many messages share, checked messages made
without the dataclass's ``__init__``. No database: the engine and the message checks alone."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine import Event, LeadScore, Scorer, compile_condition
from leadscore.engine import scorer as scorer_module
from leadscore.engine.incremental import Parts, Step, could_qualify, rescore, rescore_at
from leadscore.model import parse_model
from leadscore.model.schema import All, Condition, Leaf, Not
from leadscore.model.schema import Any as AnyOf
from leadscore.model.values import lookup, norm_text, number_of, text_of
from leadscore.service.messages import Message, check_message

from .parity_strategies import (
    LEAD_FIELDS,
    MISSING_VALUES,
    TEXT_OPERANDS,
    condition,
    events,
    models,
    properties,
    traits,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_780_000_000 * 1_000_000
HOUR = 3_600_000_000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=models(), leads=st.lists(traits(), min_size=1, max_size=3), props=properties())
def test_conditions_sharing_a_fields_text_decide_as_each_alone(model_text, leads, props):
    """The scorer tests a lead's fit rules (and an event's rules) together, reading each field
    once per mapping; each rule's condition compiled alone decides the same, lead after lead."""
    model = parse_model(model_text, "generated.yaml")
    sc = Scorer(model)
    missing = frozenset(model.missing_values)
    alone = [compile_condition(r.when, missing) for r in model.fit_rules]
    for lead in leads:  # one after the other: nothing read for one lead is kept for the next
        assert sc.fit_held(lead) == [i for i, pred in enumerate(alone) if pred(lead)]
    for r in model.engagement_rules:
        if r.trait_path is not None:
            continue
        ev = Event(r.event or "page", EPOCH + timedelta(microseconds=T0), props)
        want = [
            (i, x.points)
            for i, x in enumerate(model.engagement_rules)
            if x.trait_path is None
            and x.event_key == ev.key
            and (x.when is None or compile_condition(x.when, missing)(props))
        ]
        assert sc.matches(ev) == want


def _plain(cond: Condition, d: Mapping[str, Any], missing: frozenset[str]) -> bool:
    """A condition decided as the model language reads it, one leaf at a time, with nothing
    shared or grouped: the reference for the compiled predicates."""
    if isinstance(cond, All):
        return all(_plain(c, d, missing) for c in cond.conditions)
    if isinstance(cond, AnyOf):
        return any(_plain(c, d, missing) for c in cond.conditions)
    if isinstance(cond, Not):
        return not _plain(cond.condition, d, missing)
    assert isinstance(cond, Leaf)
    raw = lookup(d, cond.path)
    t = text_of(raw)
    present = t is not None and not (missing and norm_text(t) in missing)
    if cond.op == "exists":
        return present == cond.value
    if not present:
        return False
    assert t is not None
    text, value = norm_text(t), cond.value
    if cond.op in ("gt", "gte", "lt", "lte", "between"):
        n = number_of(raw)
        if n is None:
            return False
        if cond.op == "between":
            lo, hi = value  # type: ignore[misc]
            return bool(lo <= n <= hi)
        v = float(value)  # type: ignore[arg-type]
        return {"gt": n > v, "gte": n >= v, "lt": n < v, "lte": n <= v}[cond.op]
    if cond.op in ("equals", "in", "not_in"):
        items = value if isinstance(value, tuple) else (value,)
        n = number_of(raw)
        hit = any(
            (isinstance(i, str) and text == i) or (isinstance(i, float) and n == i) for i in items
        )
        return hit != (cond.op == "not_in")
    if cond.op == "contains":
        return str(value) in text
    if cond.op == "starts_with":
        return text.startswith(str(value))
    if cond.op == "ends_with":
        return text.endswith(str(value))
    assert cond.op == "matches"
    return re.search(str(value), text) is not None


#: alternatives on one field as models write them: an email against several domains
_AFFIX = st.builds(
    lambda f, o, v: {"field": f, o: v},
    st.sampled_from(["email", "title", "company.industry"]),
    st.sampled_from(["starts_with", "ends_with"]),
    st.sampled_from([*TEXT_OPERANDS, "@acme.io", ".io", "x@", " a@", "ops", "vp sales "]),
)


@st.composite
def _fit_conditions(draw: st.DrawFn) -> str:
    """A model whose fit rules hold the general conditions and ``any`` of affixes on a field."""
    conds = draw(st.lists(condition(LEAD_FIELDS), max_size=3))
    for _ in range(draw(st.integers(1, 3))):
        alternatives = draw(st.lists(st.one_of(_AFFIX, condition(LEAD_FIELDS)), min_size=1))
        cond: dict[str, Any] = {"any": alternatives}
        conds.append({"not": cond} if draw(st.booleans()) else cond)
    doc: dict[str, Any] = {
        "model": 1,
        "name": "conditions",
        "fit": {"rules": [{"name": f"r{i}", "when": c, "points": 1} for i, c in enumerate(conds)]},
        "mql": {"threshold": 1},
    }
    if draw(st.booleans()):
        doc["missing_values"] = draw(
            st.lists(st.sampled_from(MISSING_VALUES), min_size=1, max_size=3, unique=True)
        )
    return yaml.safe_dump(doc, sort_keys=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=_fit_conditions(), leads=st.lists(traits(), min_size=1, max_size=4))
def test_compiled_conditions_decide_as_the_language_reads_them(model_text, leads):
    """The compiled predicates (a field's text read once and shared, the ``starts_with`` or
    ``ends_with`` alternatives of an ``any`` on one field tested at once, blank text and
    placeholders told in one pass) hold exactly where the plain reading of each leaf does."""
    model = parse_model(model_text, "generated.yaml")
    sc = Scorer(model)
    missing = frozenset(model.missing_values)
    for lead in leads:
        want = [i for i, r in enumerate(model.fit_rules) if _plain(r.when, lead, missing)]
        assert sc.fit_held(lead) == want
        assert [compile_condition(r.when, missing)(lead) for r in model.fit_rules] == [
            i in want for i in range(len(model.fit_rules))
        ]


@st.composite
def _one_field_event_rules(draw: st.DrawFn) -> str:
    """A model whose rules for one event all read one property (or none): the text of that
    property read once for them all (``compile_text``), unless one of them reads a number."""
    field = draw(st.sampled_from(["path", "utm.source", "plan"]))
    conds = draw(st.lists(st.one_of(_affix_on(field), condition([field])), min_size=1, max_size=4))
    rules: list[dict[str, Any]] = [
        {"name": f"r{i}", "event": "page", "when": c, "points": 1 + i, "cap": 30}
        for i, c in enumerate(conds)
    ]
    if draw(st.booleans()):  # a rule of the event with no condition, among them
        rules.insert(
            draw(st.integers(0, len(rules))), {"name": "any", "event": "page", "points": 2}
        )
    rules.append({"name": "other", "event": "Demo Requested", "points": 5})
    doc: dict[str, Any] = {
        "model": 1,
        "name": "one-field",
        "engagement": {"half_life_days": 7, "rules": rules},
        "mql": {"threshold": 1},
    }
    if draw(st.booleans()):
        doc["missing_values"] = draw(
            st.lists(st.sampled_from(MISSING_VALUES), min_size=1, max_size=3, unique=True)
        )
    return yaml.safe_dump(doc, sort_keys=False)


def _affix_on(field: str) -> st.SearchStrategy[dict[str, Any]]:
    """``any`` of affixes on one field, as models write them (``_affixes_together``)."""
    affix = st.builds(
        lambda o, v: {"field": field, o: v},
        st.sampled_from(["starts_with", "ends_with"]),
        st.sampled_from([*TEXT_OPERANDS, "/pricing", "/p", "s", " a"]),
    )
    return st.builds(lambda c: {"any": c}, st.lists(affix, min_size=1, max_size=4))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=_one_field_event_rules(), many=st.lists(properties(), min_size=1, max_size=4))
def test_an_events_rules_on_one_field_match_as_the_language_reads_them(model_text, many):
    """An event whose rules all read one field is matched from that field's text read once
    (``Scorer.matches`` and ``engage``): the rules the plain reading of each condition counts,
    and the same sums to the last bit as each rule's own predicate gives."""
    model = parse_model(model_text, "generated.yaml")
    sc = Scorer(model)
    missing = frozenset(model.missing_values)
    rules = model.engagement_rules
    at = EPOCH + timedelta(microseconds=T0)
    evs = [Event("page", at - timedelta(hours=k), props) for k, props in enumerate(many)]
    sums = [0.0] * len(rules)
    counted = [False] * len(rules)
    for ev in evs:
        want = [
            (i, r.points)
            for i, r in enumerate(rules)
            if r.event_key == "page" and (r.when is None or _plain(r.when, ev.properties, missing))
        ]
        assert sc.matches(ev) == want
        factor = 0.5 ** ((T0 - ev.ts_us) / 1e6 / (7 * 86400.0))
        for i, pts in want:
            sums[i] += pts * factor
            counted[i] = True
    assert sc.engage(evs, T0) == (sums, counted)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_text=_one_field_event_rules(),
    many=st.lists(properties(), min_size=1, max_size=6),
    kept=st.sampled_from([0, 1, 2, 4096]),
    length=st.sampled_from([0, 3, 512]),
)
def test_rules_remembered_by_a_fields_text_match_as_tested_afresh(model_text, many, kept, length):
    """What an event's rules on one field match is remembered by that field's text: asked
    again, in any order, past the number or the length of the texts kept or not, the same
    rules as a scorer that never saw the text; and a caller that changes the list it got
    changes nothing after."""
    model = parse_model(model_text, "generated.yaml")
    at = EPOCH + timedelta(microseconds=T0)
    evs = [Event("page", at, props) for props in many]
    with (
        mock.patch.object(scorer_module, "_TEXTS_KEPT", kept),
        mock.patch.object(scorer_module, "_TEXT_LENGTH_KEPT", length),
    ):
        sc = Scorer(model)
        for ev in [*evs, *reversed(evs), *evs]:
            got = sc.matches(ev)
            assert got == Scorer(model).matches(ev)
            got.append((99, 1.0))  # the caller's own list
            assert sc.matches(ev) == Scorer(model).matches(ev)


#: what a property holds besides the usual text: lists and objects (read as their compact
#: JSON), numbers read as text, booleans, non-breaking spaces (not white space to trim)
_ODD_VALUES: list[Any] = [
    ["/pricing", 1],
    {"source": "google"},
    [],
    {},
    1e20,
    250,
    250.0,
    -0.0,
    False,
    "1e3",
    "\u00a0pro\u00a0",
    "PRO\t",
    "/PRICING/x",
]


@st.composite
def _odd_properties(draw: st.DrawFn) -> dict[str, Any]:
    """Properties whose field may hold any of ``_ODD_VALUES``, and whose ``utm`` (the parent
    of ``utm.source``) may be an object, text, a list, or a flat key with a dot in its name."""
    out: dict[str, Any] = {}
    values = st.sampled_from([*_ODD_VALUES, "/pricing", "google", "", None, "n/a", "Select"])
    for f in ("path", "plan"):
        if draw(st.booleans()):
            out[f] = draw(values)
    utm = draw(st.integers(0, 4))
    if utm == 1:
        out["utm"] = {"source": draw(values)}
    elif utm == 2:
        out["utm"] = draw(values)
    elif utm == 3:
        out["utm.source"] = draw(values)
    elif utm == 4:
        out["utm"] = [{"source": draw(values)}]
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_text=_one_field_event_rules(), many=st.lists(_odd_properties(), min_size=1, max_size=4)
)
def test_an_events_rules_on_one_field_match_any_value_as_the_language_reads_them(model_text, many):
    """The one-field reading (``compile_text``, ``text_reader``) of values that are not plain
    text: lists, objects, numbers, booleans, a nested field whose parent is not an object, a
    flat key spelt like the nested path. The rules the plain reading of each condition counts."""
    model = parse_model(model_text, "generated.yaml")
    sc = Scorer(model)
    missing = frozenset(model.missing_values)
    rules = model.engagement_rules
    at = EPOCH + timedelta(microseconds=T0)
    evs = [Event("page", at - timedelta(hours=k), props) for k, props in enumerate(many)]
    for ev in evs:
        want = [
            (i, r.points)
            for i, r in enumerate(rules)
            if r.event_key == "page" and (r.when is None or _plain(r.when, ev.properties, missing))
        ]
        assert sc.matches(ev) == want
    plain = Scorer(model)
    plain._by_text = {}  # every rule's own predicate: the reading before the one-field path
    assert sc.engage(evs, T0) == plain.engage(evs, T0)


def _rescore_each_prefix(
    scorer: Scorer,
    held: Sequence[int],
    events: Sequence[Event],
    times: Iterable[int],
    at_us: int,
    qualified: bool,
) -> Step:
    """``rescore`` as it was written before it added one event at a time: the score after each
    message at an instant computed afresh from all the events before it (quadratic)."""

    def scores_at(ts: int, final: LeadScore | None) -> Iterable[LeadScore]:
        same = [ev for ev in events if ev.ts_us == ts]
        if len(same) > 1:
            before = [ev for ev in events if ev.ts_us < ts]
            for k in range(1, len(same)):
                yield scorer.finish(held, *scorer.engage([*before, *same[:k]], ts))
        yield final if final is not None else scorer.finish(held, *scorer.engage(events, ts))

    sums, counted = scorer.engage(events, at_us)
    score = scorer.finish(held, sums, counted)
    step = Step(
        Parts(tuple(held), tuple(sums), tuple(counted), at_us),
        score,
        rescore_at(scorer, events, at_us),
    )
    if qualified:
        return step
    ts_sorted = sorted(set(times))
    if score.mql or could_qualify(scorer, held, events):
        for ts in ts_sorted:
            for s in scores_at(ts, score if ts >= at_us else None):
                if s.mql:
                    return replace(step, mql_at=ts, mql_score=s)
    if score.mql:
        return replace(step, mql_at=ts_sorted[-1] if ts_sorted else at_us, mql_score=score)
    return step


_SHARED = Scorer(
    parse_model(
        """
model: 1
name: shared-instants
fit:
  rules:
    - {name: VP, when: {field: title, equals: VP}, points: 20}
engagement:
  half_life_days: 5
  window_days: 30
  rules:
    - {name: Pricing, event: page, when: {field: path, starts_with: /pricing}, points: 7, cap: 21}
    - {name: Docs, event: page, points: 1.3}
    - {name: Trial, event: Trial Started, points: 11.7}
    - {name: Demo, event: Demo Requested, points: 9, fast_track: true}
mql: {threshold: 45, min_fit: 10}
""",
        "shared.yaml",
    )
)


_TAKING = Scorer(  # a rule that takes points away: later messages can lower the score
    parse_model(
        """
model: 1
name: shared-instants-down
engagement:
  half_life_days: 5
  rules:
    - {name: Pricing, event: page, when: {field: path, starts_with: /pricing}, points: 12}
    - {name: Docs, event: page, when: {field: path, starts_with: /docs}, points: -9}
    - {name: Trial, event: Trial Started, points: 11.7}
    - {name: Demo, event: Demo Requested, points: 9, fast_track: true}
mql: {threshold: 30}
""",
        "down.yaml",
    )
)


@st.composite
def _crowded(draw: st.DrawFn) -> tuple[list[Event], list[int], int]:
    """Events at a few instants, many at the same one (a client's queue sent at once), and the
    instants of the messages that touched the lead now."""
    instants = [T0 - draw(st.integers(-2, 20)) * HOUR for _ in range(draw(st.integers(1, 3)))]
    evs = [
        Event(
            draw(st.sampled_from(["page", "Trial Started", "Demo Requested", "Other"])),
            EPOCH + timedelta(microseconds=draw(st.sampled_from(instants))),
            {"path": draw(st.sampled_from(["/pricing", "/docs", "/"]))},
        )
        for _ in range(draw(st.integers(1, 25)))
    ]
    # received before some of them at times: a message may be up to a day ahead
    at = T0 + draw(st.integers(-3, 5)) * HOUR
    times = sorted({ev.ts_us for ev in evs} | {at})
    return evs, times, at


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    crowd=_crowded(),
    fit=st.sampled_from([[], [0]]),
    lean=st.booleans(),
    down=st.booleans(),
)
def test_qualifying_at_a_shared_instant_equals_scoring_each_prefix_afresh(crowd, fit, lean, down):
    """A lead qualifies at the first message that makes it, even among many at one instant;
    adding one event at a time, and passing over the instants whose last score falls short
    (when no rule takes points away), gives the same instant and the same score, reasons
    included. With a rule that takes points away every message is looked at."""
    evs, times, at = crowd
    sc = _TAKING if down else _SHARED
    fit = [] if down else fit
    got = rescore(sc, fit, evs, times, at, False, reasons=not lean)
    want = _rescore_each_prefix(sc, fit, evs, times, at, False)
    assert got.mql_at == want.mql_at
    assert got.mql_score == want.mql_score  # reasons and all: the MQL's reason is told from them
    assert got.parts == want.parts
    assert got.rescore_at == want.rescore_at
    assert got.score == (replace(want.score, reasons=()) if lean else want.score)


def test_many_messages_at_one_instant_qualify_at_the_one_that_crossed():
    """Ten trials started at one instant by a VP: the lead qualifies at that instant with the
    score after the third (the one that crossed), not the score after all ten."""
    ts = T0 - HOUR
    evs = [Event("Trial Started", EPOCH + timedelta(microseconds=ts)) for _ in range(10)]
    step = rescore(_SHARED, [0], evs, [ts], T0, False, reasons=False)
    assert step.mql_at == ts
    assert step.mql_score is not None
    # 20 fit + 11.7 + 11.7 = 43.4 < 45; the third trial makes 55.1
    assert step.mql_score.score == pytest.approx(20 + 3 * 11.7)
    assert [r.rule for r in step.mql_score.reasons] == ["Trial", "VP"]


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "track", "event": "Demo Requested", "userId": "u1", "messageId": "m1"},
        {"type": "page", "name": "Pricing", "anonymousId": "a1", "properties": {"path": "/p"}},
        {
            "type": "identify",
            "userId": "u2",
            "anonymousId": "a2",
            "traits": {"title": "VP"},
            "context": {"traits": {"email": "x@y.com"}},
            "timestamp": "2026-05-01T10:00:00Z",
        },
        {"type": "group", "userId": "u3", "groupId": 7, "traits": {"employees": 300}},
    ],
)
def test_a_checked_message_is_the_dataclass_its_fields_make(msg):
    """``check_message`` makes its Message without the dataclass's ``__init__``: the same
    fields, equal to the one ``__init__`` makes, and as frozen."""
    got = check_message(msg, T0, strict_json=True)
    fields = {f.name: getattr(got, f.name) for f in dataclasses.fields(Message)}
    assert vars(got) == fields
    assert Message(**fields) == got
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.user_id = "someone else"  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(evs=events())
def test_stored_events_tell_their_time_as_made_events_do(evs):
    """An event read back from the store makes its datetime only when asked: the same instant
    as the event made from it."""
    from leadscore.service.events import event_from_row

    for name, ts, props in evs:
        made = Event(name, ts, props)
        stored = event_from_row(name, made.ts_us, props)
        assert stored.timestamp == made.timestamp
        assert stored.ts_us == made.ts_us
        assert stored.key == made.key


def test_a_rule_taking_points_away_does_not_hide_the_message_that_qualified():
    """Three pricing views and then a docs view (minus 9) at one instant: after all four the
    score is 27, short of 30, yet the third made the lead an MQL at that instant."""
    ts = T0 - HOUR
    at = EPOCH + timedelta(microseconds=ts)
    evs = [Event("page", at, {"path": "/pricing"}) for _ in range(3)]
    evs.append(Event("page", at, {"path": "/docs"}))
    step = rescore(_TAKING, [], evs, [ts], T0, False, reasons=False)
    assert step.mql_at == ts
    assert step.mql_score is not None
    assert step.mql_score.score == pytest.approx(36.0)
    assert [r.rule for r in step.mql_score.reasons] == ["Pricing"]


def test_passing_over_an_instant_allows_for_the_rounding_of_large_points():
    """A competitor's -100000 fit points and engagement near 100000: the sums after a message at
    an instant and after all of them, added in another order, differ by more than a hair of the
    threshold (1) — yet the instant is looked at as the plain computation looks at it."""
    sc = Scorer(
        parse_model(
            """
model: 1
name: large
fit:
  rules:
    - {name: Competitor, when: {field: x, equals: y}, points: -100000}
engagement:
  half_life_days: 3
  rules:
    - {name: Page, event: page, points: 30462.21582252788}
mql: {threshold: 1}
""",
            "large.yaml",
        )
    )
    t2 = T0 - HOUR
    at = [t2, t2, *(t2 - a for a in (119828571428, 198514285714, 11828571428))]
    names = ["page", "other", "page", "page", "page"]
    evs = [Event(n, EPOCH + timedelta(microseconds=ts)) for n, ts in zip(names, at, strict=True)]
    times = sorted({ev.ts_us for ev in evs} | {T0})
    want = _rescore_each_prefix(sc, [0], evs, times, T0, False)
    assert want.mql_at == t2  # the rounding of the plain computation qualifies it there
    got = rescore(sc, [0], evs, times, T0, False)
    assert got.mql_at == want.mql_at
    assert got.mql_score == want.mql_score
