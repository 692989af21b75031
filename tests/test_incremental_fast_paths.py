"""The incremental engine's shortcuts give what the plain computation gives, to the last bit:
carrying stored parts forward (each instant once, a step scored only when its sums changed, the
MQL decided without building a score), re-scoring a lead with no events, and the MQL decision
made from the numbers alone. No database: the engine alone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine import Event, LeadScore, Scorer, decay
from leadscore.engine.incremental import Parts, Step, advance, can_carry, rescore
from leadscore.engine.scorer import us_of
from leadscore.model import parse_model

from .parity_strategies import AS_OF, EVENT_NAMES, events, models, properties, traits
from .test_incremental import MODELS
from .test_scoring_fast_paths import _SHARED, _TAKING, _rescore_each_prefix

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000
DAY = 24 * HOUR
T0 = us_of(AS_OF)


def _advance_as_before(
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
    """``advance`` as it was written before its shortcuts: every message's instant in the
    timeline (events' own twice), every step scored in full."""
    if not can_carry(due, (ev.ts_us for ev in new), at_us):
        return None
    model = scorer.model
    window = scorer._window_us
    half = scorer._half_life_s
    negative = scorer.negative_engagement
    times = [*times, *(ev.ts_us for ev in new)]
    sums = list(parts.sums)
    counted = list(parts.counted)
    clock = parts.at_us
    became: tuple[int, LeadScore] | None = None
    steps: list[tuple[int, list[float], list[bool]]] = []
    timeline: list[tuple[int, Event | None]] = [(ev.ts_us, ev) for ev in new]
    timeline += [(x, None) for x in times if x >= parts.at_us]
    timeline.sort(key=lambda p: (p[0], p[1] is None))
    for ts, ev in timeline:
        if ts > clock:
            f = decay(ts - clock, half)
            sums = [x * f for x in sums]
            clock = ts
        if ev is not None:
            hits = scorer.matches(ev)
            if window is not None and ev.ts_us < at_us - window:
                if hits and not qualified:
                    return None
                continue
            late = 1.0
            if ev.ts_us < clock:
                late = decay(clock - ev.ts_us, half)
            for i, pts in hits:
                sums[i] += pts * late
                counted[i] = True
            if window is not None and hits:
                expiry = ev.ts_us + window + 1
                due = expiry if due is None else min(due, expiry)
        if not qualified:
            steps.append((ts, list(sums), list(counted)))
    if at_us > clock:
        f = decay(at_us - clock, half)
        sums = [x * f for x in sums]
    score = scorer.finish(held, sums, counted, reasons=reasons)

    def may(since: int) -> bool:
        if negative:
            return True
        if model.min_fit is not None and score.fit < model.min_fit:
            return False
        undo = (1.0 + 1e-12) / decay(at_us - since, half) if at_us > since else 1.0
        return score.fit + score.engagement * undo >= model.threshold

    if not qualified and times and min(times) < parts.at_us and (score.mql or may(min(times))):
        return None
    if not qualified and steps and (score.mql or may(steps[0][0])):
        for ts, st_sums, st_counted in steps:
            if scorer.finish(held, st_sums, st_counted, reasons=False).mql:
                became = (ts, scorer.finish(held, st_sums, st_counted))
                break
    if not qualified and became is None and score.mql:
        became = (max(times), score if reasons else scorer.finish(held, sums, counted))
    parts = Parts(tuple(held), tuple(sums), tuple(counted), max(at_us, parts.at_us))
    if became is not None:
        return Step(parts, score, due, became[0], became[1])
    return Step(parts, score, due)


def _event(name: str, ts: int, props: dict | None = None) -> Event:
    return Event(name, EPOCH + timedelta(microseconds=ts), props or {})


@st.composite
def _carried(
    draw: st.DrawFn,
) -> tuple[Scorer, Parts, list[int], int | None, list[Event], list[int], int]:
    """A model, parts stored at an instant from earlier events, and a call's new events at a few
    instants (many at one, some before the stored instant: late), the instants of the call's
    other messages, and when it was received."""
    props: st.SearchStrategy[dict] = properties()
    names = [*EVENT_NAMES, "Trial Started", "Demo Requested"]
    if draw(st.integers(0, 2)):  # models whose events cross the threshold: MQL instants
        sc = draw(st.sampled_from([*(MODELS[k] for k in sorted(MODELS)), _SHARED, _TAKING]))
        props = st.builds(lambda p: {"path": p}, st.sampled_from(["/pricing", "/docs", "/"]))
        names = ["page", "Trial Started", "Demo Requested", "Other"]
    else:
        sc = Scorer(parse_model(draw(models()), "generated.yaml"))
    start = T0 - draw(st.integers(0, 40)) * DAY // 4
    earlier = [
        _event(
            draw(st.sampled_from(names)),
            start - draw(st.integers(0, 5 * 24)) * HOUR,
            draw(props),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    n_fit = len(sc.model.fit_rules)
    every = list(range(n_fit))  # often all of them: a lead near the threshold qualifies
    held = every
    if every:
        held = draw(st.one_of(st.just(every), st.lists(st.sampled_from(every), unique=True)))
    stored = rescore(sc, held, earlier, [], start, True)
    at = start + draw(st.integers(0, 10 * 24)) * HOUR
    instants = [  # mostly since the stored instant; some before it (late), some the same
        draw(
            st.one_of(
                st.integers(start, at),
                st.sampled_from([start, at]),
                st.integers(at - 30 * DAY, at),
            )
        )
        for _ in range(draw(st.integers(1, 3)))
    ]
    new = [
        _event(draw(st.sampled_from(names)), draw(st.sampled_from(instants)), draw(props))
        for _ in range(draw(st.integers(0, 12)))
    ]
    new = [ev for ev in new if ev.ts_us <= at] or new[:0]
    # the service passes at least one: every lead it scores was touched by a message
    times = draw(
        st.lists(st.sampled_from([*instants, start, at, start - HOUR]), min_size=1, max_size=4)
    )
    times += [ev.ts_us for ev in new]  # the service passes every message's instant
    return sc, stored.parts, held, stored.rescore_at, new, times, at


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_carried(), qualified=st.booleans(), reasons=st.booleans())
def test_advance_equals_the_plain_carry(case, qualified, reasons):
    """Carrying stored parts forward gives the plain computation's step to the last bit —
    parts, score, re-score instant, MQL instant and score — or asks for the history alike."""
    sc, parts, held, due, new, times, at = case
    want = _advance_as_before(sc, parts, held, new, times, at, due, qualified, reasons=reasons)
    got = advance(sc, parts, held, new, times, at, due, qualified, reasons=reasons)
    assert got == want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_text=models(),
    lead=traits(),
    times=st.lists(st.integers(-30 * 24, 24), max_size=4),
    qualified=st.booleans(),
    reasons=st.booleans(),
)
def test_a_lead_with_no_events_is_rescored_as_the_history_path_does(
    model_text, lead, times, qualified, reasons
):
    """A lead with no events (a new lead's identify) is scored without the history path, and
    gets the same step: the same parts and score, and the same MQL instant and score."""
    sc = Scorer(parse_model(model_text, "generated.yaml"))
    held = sc.fit_held(lead)
    instants = [T0 + h * HOUR for h in times]
    got = rescore(sc, held, [], instants, T0, qualified, reasons=reasons)
    want = _rescore_each_prefix(sc, held, [], instants, T0, qualified)
    assert got.parts == want.parts
    assert got.rescore_at == want.rescore_at is None
    assert got.mql_at == want.mql_at
    assert got.mql_score == want.mql_score
    assert got.score == (want.score if reasons else replace(want.score, reasons=()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=models(), lead=traits(), evs=events(), later=st.integers(0, 60 * 24))
def test_the_mql_decision_from_numbers_alone_is_the_scores(model_text, lead, evs, later):
    """``mql_of`` and ``fit_of`` decide as the score ``finish`` builds, at any instant."""
    sc = Scorer(parse_model(model_text, "generated.yaml"))
    evs = [Event(n, ts, props) for n, ts, props in evs]
    for at in (T0, T0 + later * HOUR):
        held, sums, counted = sc.parts(lead, evs, at)
        score = sc.finish(held, sums, counted)
        assert sc.fit_of(held) == score.fit
        assert sc.engagement_of(sums) == score.engagement
        assert sc.mql_of(sc.fit_of(held), sums, counted) == score.mql
