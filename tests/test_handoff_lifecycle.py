"""Lifecycle moves, what they carry (reasons, BANT, come-back dates) and CRM statuses."""

from __future__ import annotations

from itertools import pairwise

import pytest

from leadscore.errors import InvalidRequestError, StageMoveError
from leadscore.handoff import (
    BANT_KEYS,
    STAGES,
    Move,
    allowed_moves,
    check_bant,
    check_move,
    crm_stage,
    parse_routing,
)

from .handoff_helpers import ISSUE_EXAMPLE

R = parse_routing(ISSUE_EXAMPLE, "routing.yaml")
REASONS = R.rejection_reasons
BANT = {
    "budget": "$40k approved",
    "authority": "VP Sales signs",
    "need": "replacing spreadsheets",
    "timeline": "live by Q3",
}


def test_the_allowed_moves_of_every_stage():
    assert {s: allowed_moves(s) for s in STAGES} == {
        "lead": ("mql",),
        "mql": ("sal", "sql", "opportunity", "customer", "recycled", "disqualified"),
        "sal": ("sql", "opportunity", "customer", "recycled", "disqualified"),
        "sql": ("opportunity", "customer", "recycled", "disqualified"),
        "opportunity": ("customer", "recycled", "disqualified"),
        "customer": (),
        "recycled": ("mql",),
        "disqualified": (),
    }


@pytest.mark.parametrize(
    "src,dst,message",
    [
        ("lead", "sal", "a lead cannot move from 'lead' to 'sal'; from 'lead' it can move to: mql"),
        (
            "sql",
            "sal",
            "a lead cannot move from 'sql' to 'sal'; from 'sql' it can move to: "
            "opportunity, customer, recycled, disqualified",
        ),
        (
            "sal",
            "sal",
            "the lead is already at 'sal'; from 'sal' it can move to: sql, "
            "opportunity, customer, recycled, disqualified",
        ),
        (
            "customer",
            "recycled",
            "a lead cannot move from 'customer' to 'recycled'; from "
            "'customer' it can move to: none: 'customer' is final",
        ),
        (
            "recycled",
            "sal",
            "a lead cannot move from 'recycled' to 'sal'; from 'recycled' it can move to: mql",
        ),
        ("mql", "sqll", "'sqll' is not a stage — did you mean 'sql'?"),
    ],
)
def test_moves_that_are_not_allowed_say_where_the_lead_can_go(src, dst, message):
    with pytest.raises(StageMoveError) as info:
        check_move(src, dst, reason="x", rejection_reasons=REASONS)
    e = info.value
    assert str(e) == message
    assert e.details == {"from": src, "to": dst, "allowed": list(allowed_moves(src))}


def test_the_main_path_and_a_recycled_lead_that_qualifies_again():
    path = ["lead", "mql", "sal", "sql", "opportunity", "customer"]
    for a, b in pairwise(path):
        m = check_move(a, b, bant=BANT if b == "sql" else None)
        assert (m.from_stage, m.to_stage) == (a, b)
    assert check_move("mql", "sql", bant=BANT).bant == BANT
    m = check_move("sal", "recycled", reason="  budget next year ", come_back_at_us=200, at_us=100)
    assert m == Move("sal", "recycled", "budget next year", None, 200)
    assert check_move("recycled", "mql").to_stage == "mql"


def test_disqualifying_needs_a_reason_from_the_list():
    m = check_move("sql", "disqualified", reason="Bad Fit", rejection_reasons=REASONS)
    assert m.reason == "bad fit"  # as written in the routing file
    with pytest.raises(InvalidRequestError) as info:
        check_move("mql", "disqualified", reason="bad fti", rejection_reasons=REASONS)
    assert str(info.value) == (
        "'bad fti' is not a rejection reason — did you mean 'bad fit'? (the routing file lists: "
        "bad fit, no intent, wrong contact, duplicate, competitor, student)"
    )
    with pytest.raises(InvalidRequestError, match="'moved' is not a rejection reason; the rout"):
        check_move("mql", "disqualified", reason="moved", rejection_reasons=REASONS)
    with pytest.raises(InvalidRequestError, match="needs a reason: one of bad fit, no intent"):
        check_move("mql", "disqualified", rejection_reasons=REASONS)
    # a routing file without a list takes any reason
    assert check_move("mql", "disqualified", reason="gone quiet").reason == "gone quiet"


def test_recycling_needs_a_reason_and_a_later_come_back_date():
    with pytest.raises(InvalidRequestError, match="recycling a lead needs a reason"):
        check_move("sal", "recycled", reason=" ")
    with pytest.raises(InvalidRequestError, match="come-back date must be after the move"):
        check_move("sal", "recycled", reason="later", come_back_at_us=100, at_us=100)
    with pytest.raises(InvalidRequestError, match="come-back date goes with a move to 'recycled'"):
        check_move("sal", "sql", bant=BANT, come_back_at_us=100)


def test_bant_is_all_four_in_words_on_a_move_to_sql_only():
    assert BANT_KEYS == ("budget", "authority", "need", "timeline")
    with pytest.raises(InvalidRequestError, match="a move to 'sql' records BANT"):
        check_move("sal", "sql")
    with pytest.raises(InvalidRequestError) as info:
        check_bant({"budget": "yes", "authority": "", "need": "x"})
    assert str(info.value) == (
        "BANT needs budget, authority, need, timeline as text; missing or empty: authority, "
        "timeline"
    )
    with pytest.raises(InvalidRequestError, match="unknown BANT key 'budjet' — did you mean"):
        check_bant({**BANT, "budjet": "x"})
    with pytest.raises(InvalidRequestError, match="BANT is recorded on a move to 'sql' only"):
        check_move("sql", "opportunity", bant=BANT)
    assert check_bant({k: f" {v} " for k, v in BANT.items()}) == BANT


def test_crm_statuses_map_to_stages_ignoring_case():
    r = parse_routing(
        ISSUE_EXAMPLE + "crm_stages: {Working: sal, 'Closed Won': customer}\n", "r.yaml"
    )
    assert crm_stage(r, "closed won") == "customer"
    assert crm_stage(r, " WORKING ") == "sal"
    assert crm_stage(r, "Nurture") is None
    assert crm_stage(R, "Working") is None
