"""Incremental scoring (leadscore.engine.incremental): carrying stored parts forward gives what a
re-score from all the events gives. No database: the engine alone."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine import Event, Scorer, decay
from leadscore.engine.incremental import (
    Parts,
    advance,
    could_qualify,
    may_have_qualified,
    mql_reason,
    rescore,
    rescore_at,
)
from leadscore.engine.scorer import us_of
from leadscore.model import parse_model

from .parity_strategies import AS_OF, events, models, traits

DAY = 86_400_000_000
HOUR = DAY // 24
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_780_000_000 * 1_000_000  # 2026-05-28


def _scorer(text: str) -> Scorer:
    return Scorer(parse_model(textwrap.dedent(text), "test.yaml"))


MODELS = {
    "decay+window": _scorer(
        """
        model: 1
        name: m1
        fit:
          rules:
            - {name: VP, when: {field: title, equals: VP}, points: 20}
        engagement:
          half_life_days: 7
          window_days: 10
          rules:
            - {name: Pricing, event: page, points: 8, cap: 24}
            - {name: Trial, event: Trial Started, points: 15}
        mql: {threshold: 50}
        """
    ),
    "fast+min_fit": _scorer(
        """
        model: 1
        name: m2
        fit:
          rules:
            - {name: VP, when: {field: title, equals: VP}, points: 20}
        engagement:
          half_life_days: 3.5
          rules:
            - {name: Pricing, event: page, points: 6}
            - {name: Demo, event: Demo Requested, points: 10, fast_track: true}
        mql: {threshold: 45, min_fit: 10}
        """
    ),
    "no decay": _scorer(
        """
        model: 1
        name: m3
        fit:
          rules:
            - {name: VP, when: {field: title, equals: VP}, points: 20}
        engagement:
          window_days: 5
          rules:
            - {name: Pricing, event: page, points: 7}
            - {name: Trial, event: Trial Started, points: 13, cap: 26}
        mql: {threshold: 60}
        """
    ),
}
NAMES = ("page", "Trial Started", "Demo Requested", "Other")


def _ev(name: str, ts_us: int) -> Event:
    return Event(name, EPOCH + timedelta(microseconds=ts_us))


# ---------------------------------------------------------------- the rules one by one


def test_one_decay_function():
    sc = MODELS["decay+window"]
    assert decay(0, sc.model) == 1.0
    assert decay(7 * DAY, sc.model) == 0.5
    assert decay(14 * DAY, 7 * 86400.0) == 0.25
    assert decay(123 * DAY, None) == 1.0
    assert decay(5 * DAY, MODELS["no decay"].model) == 1.0


def test_parts_decay_to_a_later_instant_only():
    sc = MODELS["decay+window"]
    p = Parts((0,), (8.0, 0.0), (True, False), T0)
    assert p.decayed_to(sc.model, T0 + 7 * DAY).sums == (4.0, 0.0)
    assert p.decayed_to(sc.model, T0 - DAY) is p
    assert p.score(sc, T0 + 7 * DAY).score == 24.0


def test_rescore_at_window_exit_or_future_event():
    sc = MODELS["decay+window"]
    evs = [_ev("page", T0 - DAY), _ev("Other", T0 - 2 * DAY), _ev("Trial Started", T0 + HOUR)]
    assert rescore_at(sc, evs, T0) == T0 + HOUR
    assert rescore_at(sc, evs[:2], T0) == T0 - DAY + 10 * DAY + 1
    assert rescore_at(MODELS["fast+min_fit"], evs[:2], T0) is None


def test_could_qualify_and_may_have_qualified_are_bounds():
    sc = MODELS["decay+window"]
    three = [_ev("page", T0)] * 3
    assert not could_qualify(sc, [], three)  # 24 (capped) < 50
    assert could_qualify(sc, [0], [*three, _ev("Trial Started", T0)])  # 20 + 24 + 15 >= 50
    now = sc.finish([0], [12.0, 0.0], [True, False])  # 32 now; 48 a half-life ago
    assert not may_have_qualified(sc.model, now, T0 - 7 * DAY, T0)
    assert may_have_qualified(sc.model, now, T0 - 14 * DAY, T0)  # 20 + 48 >= 50
    fast = MODELS["fast+min_fit"]
    s = fast.finish([0], [0.0, 10.0], [False, True])
    assert s.mql and mql_reason(fast.model, s) == "fast track: Demo"
    assert mql_reason(sc.model, sc.finish([0], [24.0, 15.0], [True, True])) == (
        "score 59 reached threshold 50"
    )


def test_advance_qualifies_at_the_event_that_crossed():
    sc = MODELS["no decay"]
    first = rescore(sc, [0], [_ev("Trial Started", T0)], [T0], T0, False)
    assert first.mql_at is None and first.score.score == 33
    evs = [_ev("Trial Started", T0 + HOUR), _ev("page", T0 + 2 * HOUR), _ev("page", T0 + 3 * HOUR)]
    step = advance(sc, first.parts, [0], evs, [], T0 + DAY, first.rescore_at, False)
    assert step is not None
    assert step.score.score == 20 + 26 + 14
    assert step.mql_at == T0 + 3 * HOUR  # 59 after the first page view, 66 (capped 60) after
    # a future event cannot be carried: the caller re-scores
    assert (
        advance(sc, first.parts, [0], [_ev("page", T0 + 2 * DAY)], [], T0 + DAY, None, False)
        is None
    )
    # nor parts past their re-score time
    assert (
        advance(sc, first.parts, [0], [], [T0 + DAY], T0 + 6 * DAY, first.rescore_at, False) is None
    )


def test_a_late_event_that_may_have_qualified_earlier_asks_for_the_history():
    sc = MODELS["decay+window"]
    evs = [_ev("Trial Started", T0), _ev("page", T0)]
    first = rescore(sc, [0], evs, [T0], T0, False)  # 20 + 15 + 8 = 43
    assert first.mql_at is None
    late = [_ev("page", T0 - HOUR)]  # 51 at T0: but when did it cross? only the history knows
    assert (
        advance(sc, first.parts, [0], late, [], T0 + 30 * DAY // 10, first.rescore_at, False)
        is None
    )


_FIT_ALONE = _scorer(
    """
    model: 1
    name: m5
    fit:
      rules:
        - {name: VP, when: {field: title, equals: VP}, points: 60}
    engagement:
      half_life_days: 7
      window_days: 10
      rules:
        - {name: Pricing, event: page, points: 8}
    mql: {threshold: 50}
    """
)


@pytest.mark.parametrize(
    ("new", "times"),
    [
        # a late event that counts for no rule and has left the window, and a late message
        # between it and the stored instant
        ([("Other", -12 * DAY)], [-12 * DAY, -DAY]),
        ([], [-2 * DAY, -DAY]),  # two late messages, no event (trait changes)
        ([("Other", 1)], [1, -DAY]),  # an event after the stored instant, a message before it
        ([("page", 1)], [1, -DAY]),  # the same, the event counting for a rule
    ],
)
def test_a_late_message_keeps_the_first_mql_instant(new, times):
    """A lead that may still qualify (stage ``lead`` or ``recycled``) whose stored parts already
    qualify (on fit alone), touched by messages of which one is before the stored instant: it
    becomes an MQL at the first message, in time order, at which it qualifies, as a full
    re-score says, not at the latest message's (or the first one since the stored instant)."""
    sc = _FIT_ALONE
    stored = rescore(sc, [0], [], [], T0, True)
    assert stored.score.mql and stored.rescore_at is None
    evs = [_ev(name, T0 + dt) for name, dt in new]
    instants = [T0 + dt for dt in times]
    at = T0 + HOUR
    want = rescore(sc, [0], evs, instants, at, False)
    assert want.mql_at == min(instants)
    got = advance(sc, stored.parts, [0], evs, instants, at, stored.rescore_at, False)
    # carrying may ask for the history instead; if it answers, it answers as the history does
    assert got is None or (got.mql_at, got.score) == (want.mql_at, want.score)


# ---------------------------------------------------------------- any order == a full re-score


@dataclass
class Lead:
    parts: Parts | None = None
    due: int | None = None
    mql_at: int | None = None


def _ingest(sc: Scorer, batches, *, carry: bool) -> tuple[Lead, list[Event]]:
    """Batches as the service takes them; ``carry``: carry parts forward where it can."""
    lead = Lead()
    known: list[Event] = []
    for at, evs in batches:
        known += evs
        step = None
        if carry and lead.parts is not None:
            step = advance(sc, lead.parts, [0], evs, [], at, lead.due, lead.mql_at is not None)
        if step is None:
            times = [e.ts_us for e in evs]
            step = rescore(sc, [0], known, times, at, lead.mql_at is not None)
        lead.parts, lead.due = step.parts, step.rescore_at
        if step.mql_at is not None:
            assert lead.mql_at is None
            lead.mql_at = step.mql_at
    return lead, known


@st.composite
def _batches(draw):
    n = draw(st.integers(1, 6))
    at = T0
    out = []
    for _ in range(n):
        at += draw(st.integers(0, 8 * DAY // HOUR)) * HOUR + draw(st.integers(0, 59)) * 60_000_000
        evs = [
            _ev(draw(st.sampled_from(NAMES)), at + draw(st.integers(-20 * 24, 24)) * HOUR)
            for _ in range(draw(st.integers(1, 5)))
        ]
        out.append((at, evs))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(sorted(MODELS)),
    batches=_batches(),
    later=st.integers(0, 30 * 24),
)
def test_incremental_ingest_equals_a_full_rescore(which, batches, later):
    sc = MODELS[which]
    inc, known = _ingest(sc, batches, carry=True)
    ref, _ = _ingest(sc, batches, carry=False)
    assert inc.mql_at == ref.mql_at
    last = batches[-1][0]
    for at in (last, last + later * HOUR):
        want = sc.finish([0], *sc.engage(known, at))
        if inc.due is not None and at >= inc.due:
            got = rescore(sc, [0], known, [], at, True).score
        else:
            assert inc.parts is not None
            got = inc.parts.score(sc, at)
        assert got.score == pytest.approx(want.score, abs=1e-6)
        assert got.engagement == pytest.approx(want.engagement, abs=1e-6)
        assert got.mql == want.mql
        assert [r.rule for r in got.reasons] == [r.rule for r in want.reasons]


# ---------------------------------------------------------------- numbers alone == the full score


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=models(), lead=traits(), evs=events(), later=st.integers(0, 60 * 24))
def test_numbers_alone_equal_the_full_scores_numbers(model_text, lead, evs, later):
    """``finish(reasons=False)``, which the live service stores, gives exactly the numbers of the
    full score, for any model and events, and leaves the reasons empty."""
    sc = Scorer(parse_model(model_text, "generated.yaml"))
    evs = [Event(n, ts, props) for n, ts, props in evs]
    at = us_of(AS_OF)
    held, sums, counted = sc.parts(lead, evs, at)
    parts = Parts(tuple(held), tuple(sums), tuple(counted), at)
    for when in (at, at + later * HOUR):  # stored parts decayed to a later read, too
        p = parts.decayed_to(sc.model, when)
        full = sc.finish(p.held, list(p.sums), list(p.counted))
        numbers = sc.finish(p.held, list(p.sums), list(p.counted), reasons=False)
        assert numbers.reasons == ()
        assert numbers == replace(full, reasons=())
    assert sc.finish(held, sums, counted, reasons=False) == replace(
        sc.score(lead, evs, AS_OF), reasons=()
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=models(), lead=traits(), evs=events(), later=st.integers(0, 60 * 24))
def test_a_score_from_its_parts_ranks_its_reasons_as_scoring_does(model_text, lead, evs, later):
    """``finish`` from the parts (the numbers of ``finish(reasons=False)``, the reasons ranked by
    sorting tuples that carry their place) gives the score ``_finish`` gives, which ``score``
    uses (a stable sort by points away from zero, then by the rules' order): numbers and
    reasons to the last bit, for any model, ties included."""
    sc = Scorer(parse_model(model_text, "generated.yaml"))
    evs = [Event(n, ts, props) for n, ts, props in evs]
    at = us_of(AS_OF)
    held, sums, counted = sc.parts(lead, evs, at)
    assert repr(sc.finish(held, sums, counted)) == repr(sc.score(lead, evs, AS_OF))
    rules = sc.model.fit_rules
    p = Parts(tuple(held), tuple(sums), tuple(counted), at).decayed_to(sc.model, at + later * HOUR)
    got = sc.finish(p.held, list(p.sums), list(p.counted))
    want = sc._finish([(rules[i], rules[i].points) for i in p.held], list(p.sums), list(p.counted))
    assert repr(got) == repr(want)  # (repr tells -0.0 from 0.0)


def test_finish_reads_the_fit_rules_that_hold_from_any_iterable():
    """``finish`` takes the fit rules that hold as any iterable of indexes, a one-pass one
    (a generator) included: the numbers and the reasons are those of the same indexes in a
    list, the fit rule's reason among them."""
    sc = MODELS["decay+window"]
    want = sc.finish([0], [16.0, 15.0], [True, True])
    got = sc.finish((i for i in [0]), [16.0, 15.0], [True, True])
    assert [r.rule for r in want.reasons] == ["VP", "Pricing", "Trial"]
    assert repr(got) == repr(want)


def _steps(sc: Scorer, batches, *, reasons: bool) -> list[tuple[str, object]]:
    """Every step the service would take for these batches, carried where it can."""
    lead = Lead()
    known: list[Event] = []
    out: list[tuple[str, object]] = []
    for at, evs in batches:
        known += evs
        step = None
        if lead.parts is not None:
            step = advance(
                sc, lead.parts, [0], evs, [], at, lead.due, lead.mql_at is not None, reasons=reasons
            )
            out.append(("advance", step))
        if step is None:
            times = [e.ts_us for e in evs]
            step = rescore(sc, [0], known, times, at, lead.mql_at is not None, reasons=reasons)
            out.append(("rescore", step))
        lead.parts, lead.due = step.parts, step.rescore_at
        if step.mql_at is not None:
            lead.mql_at = step.mql_at
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(sorted(MODELS)), batches=_batches())
def test_advance_and_rescore_without_reasons_take_the_same_steps(which, batches):
    """The service's ``reasons=False`` changes nothing but the step's reasons: the same parts,
    numbers, re-score instants and MQL instants, and an MQL's score keeps its reasons."""
    sc = MODELS[which]
    full = _steps(sc, batches, reasons=True)
    lean = _steps(sc, batches, reasons=False)
    assert [kind for kind, _ in lean] == [kind for kind, _ in full]
    for (_, a), (_, b) in zip(lean, full, strict=True):
        if b is None:
            assert a is None
            continue
        assert a is not None
        assert a.score.reasons == ()
        assert a == replace(b, score=replace(b.score, reasons=()))
        if b.mql_score is not None:
            assert b.mql_score.reasons  # a qualifying score has something to show
            assert mql_reason(sc.model, a.mql_score) == mql_reason(sc.model, b.mql_score)
