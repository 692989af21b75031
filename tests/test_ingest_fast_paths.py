"""The ingest path's shortcuts give what the plain computation gives, to the last bit: a lead's
events scored at several instants from their conditions tested once, and the fit of a lead
re-scored from its history taken from its stored parts when its traits did not change."""

from __future__ import annotations

import copy
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine import Event, Scorer
from leadscore.engine.incremental import advance
from leadscore.engine.scorer import us_of
from leadscore.model import parse_model
from leadscore.service import scoring
from leadscore.service.messages import Message
from leadscore.service.scoring import make_active
from tests.service_helpers import Api, ago, identify, page, parse_iso, track, us

from .parity_strategies import AS_OF, events, models
from .test_incremental_fast_paths import _carried

T0 = us_of(AS_OF)
HOUR = 3_600_000_000


def _bits(xs: list[float]) -> list[bytes]:
    """Each float's bytes: equal lists of these are equal to the last bit (0.0 and -0.0 too)."""
    return [struct.pack("<d", x) for x in xs]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_text=models(),
    evs=events(),
    instants=st.lists(st.integers(-60 * 24, 24), min_size=1, max_size=4),
)
def test_events_matched_once_engage_as_the_events_do(model_text, evs, instants):
    """``engage_matched`` of each event's instant and matching rules (tested once) gives
    ``engage``'s sums and counted rules at every instant, to the last bit; and adding to parts
    (``engage_matched_into``) adds as ``engage_into`` does."""
    sc = Scorer(parse_model(model_text, "generated.yaml"))
    evs = [Event(n, ts, props) for n, ts, props in evs]
    timed = [(ev.ts_us, sc.matches(ev)) for ev in evs]
    for h in instants:
        at = T0 + h * HOUR
        want_sums, want_counted = sc.engage(evs, at)
        got_sums, got_counted = sc.engage_matched(timed, at)
        assert _bits(got_sums) == _bits(want_sums)
        assert got_counted == want_counted
        half = len(evs) // 2
        sums, counted = sc.engage(evs[:half], at)
        sc.engage_into(evs[half:], at, sums, counted)
        m_sums, m_counted = sc.engage_matched(timed[:half], at)
        sc.engage_matched_into(timed[half:], at, m_sums, m_counted)
        assert _bits(m_sums) == _bits(sums)
        assert m_counted == counted


def _held(api: Api, lead: str) -> tuple[list[int], list[int]]:
    """The fit rules the lead's stored parts say hold, and the ones its stored traits make."""
    from leadscore.service.common import loads

    row = api.row(lead)
    active = api.service.active
    assert active is not None
    return loads(row.rule_sums)["h"], active.scorer.fit_held(loads(row.traits) or {})


def test_a_late_qualifier_rescored_from_history_keeps_the_fit_of_its_traits(api: Api) -> None:
    """A late demo request re-scores the lead from its history (it may have qualified then):
    with its traits unchanged its fit is its stored parts', and with a trait changed in the same
    request its fit is decided again — in both, the fit its traits make."""
    api.ok(
        identify("same", {"title": "Head of Growth"}),
        identify("moved", {"title": "Head of Growth"}),
        page("same", "/", timestamp=ago(0, minutes=1)),
        page("moved", "/", timestamp=ago(0, minutes=1)),
    )
    api.ok(
        track("same", "Demo Requested", timestamp=ago(4)),
        identify("moved", {"company": {"employees": 300}}),
        track("moved", "Demo Requested", timestamp=ago(4)),
    )
    stored, made = _held(api, "same")
    assert stored == made == [0]
    stored, made = _held(api, "moved")
    assert stored == made == [0, 1]
    assert api.row("same").fit == 20
    assert api.row("moved").fit == 35
    assert api.row("same").stage == api.row("moved").stage == "mql"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_text=models(), evs=events())
def test_an_event_matches_the_rules_its_conditions_hold_for(model_text, evs):
    """``matches`` (told at once for an event whose rules have no condition) gives the rules of
    the event's name whose condition holds for its properties, each tested alone, in order."""
    sc = Scorer(parse_model(model_text, "generated.yaml"))
    for name, ts, props in evs:
        ev = Event(name, ts, props)
        want = [
            (i, pts)
            for i, pred, pts in sc._by_event.get(ev.key, [])
            if pred is None or pred(ev.properties, {})
        ]
        assert sc.matches(ev) == want
        got = sc.matches(ev)
        got.append((-1, 0.0))  # the caller's own list: the next answer is unchanged
        assert sc.matches(ev) == want


def test_traits_changed_by_an_import_decide_the_fit_of_the_next_ingest(
    api: Api, tmp_path: Path
) -> None:
    """An import that changes a scored lead's traits leaves its stored parts' fit behind: the
    next ingest, which changes no trait, scores the fit the imported traits make, on the quick
    path (a page view) and on the path from its history (a late event) alike."""
    api.ok(identify("quick", {"title": "Head of Growth"}), identify("late", {"title": "Head"}))
    assert api.row("quick").fit == 20
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,company.employees\nquick,300\nlate,300\n")
    api.service.import_history(leads=leads, stages=None)
    api.ok(page("quick", "/"), track("late", "Webinar Attended", timestamp=ago(3)))
    for lead in ("quick", "late"):
        stored, made = _held(api, lead)
        assert stored == made
    assert api.row("quick").fit == 35


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_carried(), qualified=st.booleans(), as_tuples=st.booleans())
def test_carrying_stored_parts_leaves_them_as_read(case, qualified, as_tuples):
    """``scoring.carry`` hands the engine lists of its own (``advance_from`` changes the lists
    it is given): the stored parts it was given are the same after it, whether read from the
    database (lists) or kept by a PostgreSQL group for its next call (tuples), so a request
    tried again, or the group's next call, carries the same parts to the same step; and that
    step is ``advance``'s of those parts."""
    sc, parts, held, due, new, times, at = case
    kind = tuple if as_tuples else list
    stored = {"v": 1, "h": kind(held), "s": kind(parts.sums), "c": kind(parts.counted)}
    before = copy.deepcopy(stored)
    active = make_active(1, sc.model)
    messages = [
        Message(
            type="page" if ev.key == "page" else "track",
            user_id="u1",
            anonymous_id=None,
            previous_id=None,
            event=ev.name,
            ts_us=ev.ts_us,
            time_field="timestamp",
            properties=dict(ev.properties),
            traits=None,
            group_id=None,
            message_id=f"m{k}",
        )
        for k, ev in enumerate(new)
    ]
    stage = "mql" if qualified else "lead"
    first = scoring.carry(active, {}, stage, (stored, parts.at_us, due), False, messages, times, at)
    assert stored == before
    assert _bits(list(stored["s"])) == _bits(list(before["s"]))
    again = scoring.carry(active, {}, stage, (stored, parts.at_us, due), False, messages, times, at)
    assert again == first
    assert stored == before
    want = advance(sc, parts, held, new, times, at, due, qualified, reasons=False)
    assert first == want


def test_a_recycled_lead_touched_late_qualifies_at_its_first_late_message(api: Api) -> None:
    """A lead recycled four days ago whose stored score still qualifies, sent two late messages
    (trait changes after its recycling but timestamped before its last score): it becomes an
    MQL again at the first of them, at which it qualifies, as a full re-score from its history
    says, not at the latest one."""
    api.ok(
        identify("u", {"title": "VP Sales", "company": {"employees": 300}}, timestamp=ago(6)),
        *(page("u", "/pricing", timestamp=ago(5)) for _ in range(3)),
        *(page("u", f"/p{i}", timestamp=ago(5)) for i in range(5)),
    )
    assert api.row("u").stage == "mql"
    api.service.move(
        "u", "recycled", "ann@acme.io", reason="next budget year", at_us=us(parse_iso(ago(4)))
    )
    assert api.row("u").stage == "recycled"
    first, second = ago(2), ago(1)
    api.ok(
        identify("u", {"plan": "a"}, timestamp=first),
        identify("u", {"plan": "b"}, timestamp=second),
    )
    row = api.row("u")
    assert row.stage == "mql"
    assert row.mql_at_us == us(parse_iso(first))
