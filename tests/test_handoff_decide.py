"""Where a lead goes, and why: routing decisions without a database."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.handoff import (
    AT_CAP,
    AWAY,
    OUTSIDE_HOURS,
    RepState,
    Routing,
    Team,
    parse_routing,
    round_robin_order,
    route,
)

from .handoff_helpers import ISSUE_EXAMPLE, us

R = parse_routing(ISSUE_EXAMPLE, "routing.yaml")
BIG_US = {"company": {"employees": 5000}, "country": "US", "email": "kim@big.example"}
SMALL = {"company": {"employees": 12}, "country": "FR"}
# a Tuesday at 10:00 in New York, and the same day at 22:00
OPEN = us(2026, 3, 3, 10, tz="America/New_York")
NIGHT = us(2026, 3, 3, 22, tz="America/New_York")


def go(lead, *, reps=None, last=None, open_mqls=None, at=OPEN, account_owner=None, routing=R):
    return route(
        routing,
        lead,
        reps=reps or {},
        last_member=last or {},
        open_mqls=open_mqls or {},
        at_us=at,
        account_owner=account_owner,
    )


def test_first_matching_rule_and_round_robin_in_member_order():
    d = go(BIG_US)
    assert (d.owner, d.team, d.rule, d.kind, d.last_member) == (
        "ann@acme.io",
        "enterprise",
        "Enterprise North America",
        "route",
        "ann@acme.io",
    )
    assert d.path == (
        {"step": "rule", "rule": "Enterprise North America", "matched": True},
        {"step": "rep", "team": "enterprise", "rep": "ann@acme.io", "result": "assigned"},
    )
    nxt = go(BIG_US, last={"enterprise": d.last_member})
    assert nxt.owner == "raj@acme.io" and nxt.last_member == "raj@acme.io"
    assert go(BIG_US, last={"enterprise": "raj@acme.io"}).owner == "ann@acme.io"


def test_the_second_rule_takes_what_the_first_does_not():
    d = go(SMALL)
    assert (d.owner, d.team, d.rule, d.kind) == ("lee@acme.io", "smb", "Everyone else", "route")
    assert [s.get("matched") for s in d.path if s["step"] == "rule"] == [False, True]


def test_away_reps_are_skipped_and_said_so():
    d = go(BIG_US, reps={"ann@acme.io": RepState(away=True)})
    assert d.owner == "raj@acme.io"
    assert d.path[1] == {
        "step": "rep",
        "team": "enterprise",
        "rep": "ann@acme.io",
        "result": "skipped",
        "reason": AWAY,
    }


def test_a_rep_whose_back_date_has_passed_is_back():
    reps = {"ann@acme.io": RepState(away=True, back_at_us=OPEN - 1)}
    assert go(BIG_US, reps=reps).owner == "ann@acme.io"
    reps = {"ann@acme.io": RepState(away=True, back_at_us=OPEN + 1)}
    assert go(BIG_US, reps=reps).owner == "raj@acme.io"


def test_reps_at_their_cap_are_skipped_with_the_count():
    d = go(BIG_US, open_mqls={"ann@acme.io": 25, "raj@acme.io": 24})
    assert d.owner == "raj@acme.io"
    assert d.path[1] == {
        "step": "rep",
        "team": "enterprise",
        "rep": "ann@acme.io",
        "result": "skipped",
        "reason": AT_CAP,
        "open_mqls": 25,
        "max_open_mqls": 25,
    }


def test_nobody_can_take_it_so_the_fallback_does():
    d = go(
        BIG_US,
        reps={"ann@acme.io": RepState(away=True)},
        open_mqls={"raj@acme.io": 30},
    )
    assert (d.owner, d.team, d.rule, d.kind, d.last_member) == (
        "lee@acme.io",
        None,
        "Enterprise North America",
        "fallback",
        None,
    )
    assert [s.get("reason") for s in d.path] == [None, AWAY, AT_CAP, None]
    assert d.path[-1] == {
        "step": "fallback",
        "owner": "lee@acme.io",
        "because": "nobody in team enterprise can take it",
    }


def test_outside_working_hours_every_member_is_skipped():
    d = go(BIG_US, at=NIGHT)
    assert d.kind == "fallback" and d.owner == "lee@acme.io"
    skipped = [(s["rep"], s["reason"]) for s in d.path if s["step"] == "rep"]
    assert skipped == [("ann@acme.io", OUTSIDE_HOURS), ("raj@acme.io", OUTSIDE_HOURS)]
    assert d.path[1]["working_hours"] == "mon,tue,wed,thu,fri 09:00-18:00 America/New_York"
    # a Saturday morning is outside too; the smb team has no hours and takes leads any time
    saturday = us(2026, 3, 7, 10, tz="America/New_York")
    assert go(BIG_US, at=saturday).kind == "fallback"
    assert go(SMALL, at=saturday).kind == "route"


def test_the_fallback_takes_the_lead_even_when_away_and_the_path_says_so():
    d = go(SMALL, reps={"lee@acme.io": RepState(away=True)})
    assert d.owner == "lee@acme.io" and d.kind == "fallback"
    assert d.path[-1]["note"] == "the fallback owner is away"


def test_the_account_owner_goes_first_unless_away():
    d = go(BIG_US, account_owner="raj@acme.io")
    assert (d.owner, d.team, d.rule, d.kind, d.last_member) == (
        "raj@acme.io",
        "enterprise",
        None,
        "account",
        None,
    )
    assert d.path == ({"step": "account", "owner": "raj@acme.io", "result": "assigned"},)
    # an owner outside every team still gets their account's leads
    assert go(SMALL, account_owner="boss@acme.io").team is None
    away = go(BIG_US, account_owner="raj@acme.io", reps={"raj@acme.io": RepState(away=True)})
    assert away.owner == "ann@acme.io" and away.kind == "route"
    assert away.path[0] == {
        "step": "account",
        "owner": "raj@acme.io",
        "result": "skipped",
        "reason": AWAY,
    }


def test_no_rule_matches_so_the_fallback_takes_it():
    r = parse_routing(
        "routing: 1\nname: x\nfallback: lee@acme.io\nteams: {t: {members: [a@x.io]}}\n"
        "rules:\n  - {name: Only US, when: {field: country, equals: US}, team: t}\n",
        "r.yaml",
    )
    d = go(SMALL, routing=r)
    assert (d.owner, d.rule, d.kind) == ("lee@acme.io", None, "fallback")
    assert d.path[-1]["because"] == "no rule matched"


def test_a_rule_can_name_one_owner():
    r = parse_routing(
        "routing: 1\nname: x\nfallback: lee@acme.io\nteams: {t: {members: [a@x.io]}}\n"
        "rules:\n  - {name: VIP, when: {field: grade, starts_with: A}, owner: a@x.io}\n",
        "r.yaml",
    )
    d = go({"grade": "A1"}, routing=r)
    assert (d.owner, d.team, d.rule, d.kind) == ("a@x.io", "t", "VIP", "route")
    d = go({"grade": "A1"}, routing=r, reps={"a@x.io": RepState(away=True)})
    assert (d.owner, d.kind) == ("lee@acme.io", "fallback")
    assert d.path[-1]["because"] == "owner a@x.io cannot take it"


def test_conditions_read_the_computed_score_and_fast_track():
    r = parse_routing(
        "routing: 1\nname: x\nfallback: lee@acme.io\nteams: {t: {members: [a@x.io]}}\n"
        "rules:\n  - name: Hot\n    when: {all: [{field: score, gte: 80}, "
        "{field: fast_track, equals: true}]}\n    team: t\n",
        "r.yaml",
    )
    assert go({"score": 85, "fast_track": True}, routing=r).kind == "route"
    assert go({"score": 85, "fast_track": False}, routing=r).kind == "fallback"
    assert go({"score": 70, "fast_track": True}, routing=r).kind == "fallback"


def test_the_decision_is_json():
    d = go(BIG_US, reps={"ann@acme.io": RepState(away=True)})
    assert json.loads(json.dumps(d.to_dict())) == {
        "owner": "raj@acme.io",
        "team": "enterprise",
        "rule": "Enterprise North America",
        "kind": "route",
        "path": [dict(s) for s in d.path],
    }


def test_a_last_member_who_left_the_team_restarts_the_round():
    assert round_robin_order(("a", "b", "c"), "b") == ("c", "a", "b")
    assert round_robin_order(("a", "b", "c"), "gone") == ("a", "b", "c")
    assert round_robin_order(("a", "b", "c"), None) == ("a", "b", "c")


MEMBERS = tuple(f"rep{i}@acme.io" for i in range(6))


def _team_routing(cap: int | None) -> Routing:
    return Routing(
        name="t",
        teams={"t": Team("t", MEMBERS, cap, None)},
        rules=parse_routing(
            "routing: 1\nname: t\nfallback: fb@acme.io\nteams: {t: {members: [a@x.io]}}\n"
            "rules: [{name: All, team: t}]\n",
            "r.yaml",
        ).rules,
        fallback="fb@acme.io",
    )


@settings(max_examples=60, deadline=None)
@given(
    away=st.sets(st.sampled_from(MEMBERS)),
    n=st.integers(min_value=1, max_value=40),
    start=st.one_of(st.none(), st.sampled_from(MEMBERS)),
)
def test_round_robin_is_fair_over_the_reps_who_are_available(away, n, start):
    routing = _team_routing(None)
    reps = {m: RepState(away=True) for m in away}
    last: str | None = start
    got: Counter[str] = Counter()
    for _ in range(n):
        d = go({}, routing=routing, reps=reps, last={"t": last})
        got[d.owner] += 1
        if d.last_member is not None:
            last = d.last_member
    available = [m for m in MEMBERS if m not in away]
    if not available:
        assert got == Counter({"fb@acme.io": n})
        return
    assert set(got) <= set(available)
    counts = [got[m] for m in available]
    assert sum(counts) == n and max(counts) - min(counts) <= 1


@settings(max_examples=60, deadline=None)
@given(
    away=st.sets(st.sampled_from(MEMBERS)),
    open_mqls=st.dictionaries(st.sampled_from(MEMBERS), st.integers(0, 5)),
    last=st.one_of(st.none(), st.sampled_from(MEMBERS)),
    cap=st.one_of(st.none(), st.integers(1, 5)),
    account=st.one_of(st.none(), st.sampled_from(MEMBERS)),
)
def test_the_same_inputs_give_the_same_decision(away, open_mqls, last, cap, account):
    routing = _team_routing(cap)
    reps = {m: RepState(away=True) for m in away}
    first = go(
        {}, routing=routing, reps=reps, last={"t": last}, open_mqls=open_mqls, account_owner=account
    )
    # the same state given in another order decides the same
    again = go(
        {},
        routing=routing,
        reps=dict(reversed(list(reps.items()))),
        last={"t": last},
        open_mqls=dict(reversed(list(open_mqls.items()))),
        account_owner=account,
    )
    assert again == first
    # the owner is the first rep in round-robin order who can take it
    if first.kind == "route":
        order = round_robin_order(MEMBERS, last)
        can = [m for m in order if m not in away and (cap is None or open_mqls.get(m, 0) < cap)]
        assert first.owner == can[0]
        skipped = [s["rep"] for s in first.path if s.get("result") == "skipped" and "rep" in s]
        assert skipped == list(order[: order.index(first.owner)])
