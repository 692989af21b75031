"""Worked examples of the score arithmetic in the Python engine, computed by hand.

Every expected number is written as the arithmetic of the spec ("Scores of one lead at an
instant"), never obtained from the engine, so a test failing here means the engine and the
contract disagree.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from leadscore.engine import Event, LeadScore, Scorer
from leadscore.model import parse_model

AS_OF = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def scorer(text: str) -> Scorer:
    return Scorer(parse_model(textwrap.dedent(text), "test.yaml"))


def ago(days: float = 0, **kw: float) -> datetime:
    return AS_OF - timedelta(days=days, **kw)


def fit_of(sc: Scorer, traits: dict[str, Any]) -> float:
    return sc.score(traits, [], AS_OF).fit


def reasons(s: LeadScore) -> list[tuple[str, float]]:
    return [(r.rule, r.points) for r in s.reasons]


def one_leaf(when: str, points: float = 10) -> Scorer:
    """A model with one fit rule, to test a single condition."""
    return scorer(
        f"""\
        model: 1
        name: t
        fit:
          rules:
            - name: Rule
              when: {when}
              points: {points}
        mql: {{threshold: 1000}}
        """
    )


def holds(when: str, traits: dict[str, Any]) -> bool:
    return fit_of(one_leaf(when), traits) == 10


# --- fit -----------------------------------------------------------------------------------

FIT = """\
model: 1
name: t
fit:
  {max}
  rules:
    - name: Size
      when: {{field: company.employees, between: [200, 5000]}}
      points: 15
    - name: Senior
      when: {{field: title, matches: "vp|chief|director"}}
      points: 15
    - name: Software
      when: {{field: company.industry, equals: software}}
      points: 10
    - name: Personal email
      when: {{any: [{{field: email, ends_with: "@gmail.com"}}, {{field: email, ends_with: "@yahoo.com"}}]}}
      points: -20
mql: {{threshold: 50}}
"""

ICP_LEAD = {
    "title": "VP Marketing",
    "email": "ann@acme.io",
    "company": {"employees": 300, "industry": "Software"},
}


def test_fit_is_the_sum_of_matching_rules() -> None:
    s = scorer(FIT.format(max="")).score(ICP_LEAD, [], AS_OF)
    assert s.fit == 15 + 15 + 10
    assert s.engagement == 0
    assert s.score == 15 + 15 + 10 + 0
    assert s.mql is False  # 40 < 50


def test_fit_max_lowers_fit_but_reasons_keep_each_rules_points() -> None:
    s = scorer(FIT.format(max="max: 30")).score(ICP_LEAD, [], AS_OF)
    assert s.fit == min(15 + 15 + 10, 30)
    assert s.score == 30
    assert reasons(s) == [("Size", 15), ("Senior", 15), ("Software", 10)]


def test_fit_may_be_negative() -> None:
    lead = {"title": "Chief of Staff", "email": "bob@gmail.com", "company": {"employees": 10}}
    s = scorer(FIT.format(max="max: 30")).score(lead, [], AS_OF)
    assert s.fit == 15 - 20
    assert s.score == -5
    assert reasons(s) == [("Personal email", -20), ("Senior", 15)]


def test_company_traits_are_nested_paths() -> None:
    sc = one_leaf("{field: company.industry, equals: Software}")
    assert fit_of(sc, {"company": {"industry": "software"}}) == 10
    # a trait literally named "company.industry" is not the nested path
    assert fit_of(sc, {"company.industry": "software"}) == 0
    # a path through something that is not a mapping is an absent field
    assert fit_of(sc, {"company": "Software"}) == 0
    deep = one_leaf("{field: company.hq.country, in: [DE, AT]}")
    assert fit_of(deep, {"company": {"hq": {"country": " de "}}}) == 10


# --- text comparisons ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "value", "expected"),
    [
        ("{field: v, equals: Software}", "  SOFTWARE\t", True),
        ("{field: v, equals: '  software '}", "Software", True),
        ("{field: v, equals: Software}", "Soft ware", False),
        ("{field: v, in: [Retail, Software]}", " software", True),
        ("{field: v, not_in: [Retail, Software]}", "SOFTWARE ", False),
        ("{field: v, not_in: [Retail, Software]}", "Healthcare", True),
        ("{field: v, contains: Market}", "VP MARKETING", True),
        ("{field: v, starts_with: /Pricing}", "  /pricing/enterprise", True),
        ("{field: v, starts_with: /pricing}", "/docs/pricing", False),
        ("{field: v, ends_with: '@GMAIL.com'}", "ann@gmail.com  ", True),
        ("{field: v, matches: 'vp|chief'}", "Chief Revenue Officer", True),
        ("{field: v, matches: '^vp'}", "  VP Sales", True),  # trimmed before matching
        ("{field: v, matches: 'sales$'}", "VP Sales  ", True),
        ("{field: v, matches: '^vp'}", "SVP Sales", False),
        ("{field: v, matches: 'direct.r'}", "Director", True),
        # a text operand compares as text: no numeric reading
        ("{field: v, equals: '250'}", 250, True),
        ("{field: v, equals: '250'}", 250.0, False),  # its text is "250.0"
        # YAML's yes/no words stay text inside conditions
        ("{field: v, in: [NO, SE]}", "no", True),
        ("{field: v, equals: true}", True, True),
        ("{field: v, equals: true}", "TRUE", True),
        ("{field: v, equals: yes}", True, False),
    ],
)
def test_text_comparisons_ignore_case_and_surrounding_space(
    when: str, value: Any, expected: bool
) -> None:
    assert holds(when, {"v": value}) is expected


def test_lists_and_objects_compare_as_compact_json_text() -> None:
    tags = {"tags": ["Enterprise", "EMEA"]}
    assert holds("{field: tags, contains: emea}", tags)
    assert holds("""{field: tags, equals: '["enterprise","emea"]'}""", tags)
    assert holds("""{field: meta, equals: '{"tier":1}'}""", {"meta": {"tier": 1}})
    # an empty list is text ("[]"), so the field exists
    assert holds("{field: tags, exists: true}", {"tags": []})


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (250, True),
        (250.0, True),
        ("250", True),
        (" 250 ", True),
        ("2.5e2", True),
        (200, True),  # between is inclusive
        (5000, True),
        (199.99, False),
        ("5000.01", False),
        ("n/a", False),
        ("1,000", False),
        (True, False),  # a boolean is not a number
        ("", False),
        (None, False),
    ],
)
def test_numeric_operators_read_text_as_numbers(value: Any, expected: bool) -> None:
    assert holds("{field: n, between: [200, 5000]}", {"n": value}) is expected


@pytest.mark.parametrize(
    ("when", "value", "expected"),
    [
        ("{field: n, gt: 250}", "250.5", True),
        ("{field: n, gt: 250}", 250, False),
        ("{field: n, gte: 250}", "250", True),
        ("{field: n, lt: 10}", "-3", True),
        ("{field: n, lte: 10}", 10, True),
        ("{field: n, lte: 10}", "n/a", False),
        ("{field: n, gt: '100'}", 101, True),  # a quoted number in gt is still a number
        # "n/a" makes the leaf false, so `not` of it is true
        ("{not: {field: n, gt: 250}}", "n/a", True),
    ],
)
def test_comparison_operators(when: str, value: Any, expected: bool) -> None:
    assert holds(when, {"n": value}) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (250, True),
        ("250", True),
        ("250.0", True),
        (" 2.5E2 ", True),
        ("250 employees", False),
        ("n/a", False),
        (251, False),
    ],
)
def test_equals_with_a_number_compares_numerically(value: Any, expected: bool) -> None:
    assert holds("{field: n, equals: 250}", {"n": value}) is expected


def test_in_with_numbers_and_words_mixed() -> None:
    when = "{field: n, in: [1, 2, unknown]}"
    assert holds(when, {"n": "2.0"})
    assert holds(when, {"n": " Unknown "})
    assert not holds(when, {"n": "3"})


# --- absent values -------------------------------------------------------------------------

ABSENT = [{}, {"f": None}, {"f": ""}, {"f": "   "}]
EVERY_LEAF = [
    "{field: f, equals: x}",
    "{field: f, in: [x]}",
    "{field: f, not_in: [x]}",
    "{field: f, gt: 0}",
    "{field: f, gte: 0}",
    "{field: f, lt: 0}",
    "{field: f, lte: 0}",
    "{field: f, between: [0, 1]}",
    "{field: f, contains: x}",
    "{field: f, starts_with: x}",
    "{field: f, ends_with: x}",
    "{field: f, matches: '.*'}",
    "{field: f, exists: true}",
]


@pytest.mark.parametrize("traits", ABSENT, ids=["absent", "null", "empty", "blank"])
def test_an_absent_field_makes_every_leaf_false_but_exists_false(traits: dict[str, Any]) -> None:
    for when in EVERY_LEAF:
        assert not holds(when, traits), when
    assert holds("{field: f, exists: false}", traits)
    # `not` of a false leaf is true, even for not_in
    assert holds("{not: {field: f, not_in: [x]}}", traits)
    assert holds("{not: {field: f, equals: x}}", traits)


def test_exists_on_present_values() -> None:
    for value in ("x", 0, False, " a "):
        assert holds("{field: f, exists: true}", {"f": value})
        assert not holds("{field: f, exists: false}", {"f": value})


def test_all_any_not_combine() -> None:
    when = "{all: [{field: a, equals: x}, {any: [{field: b, gt: 5}, {not: {field: c, exists: true}}]}]}"
    assert holds(when, {"a": "X", "b": 6, "c": 1})
    assert holds(when, {"a": "X", "b": 1})  # c absent -> not(exists) holds
    assert not holds(when, {"a": "X", "b": 1, "c": 1})
    assert not holds(when, {"a": "y", "b": 6})


# --- engagement ----------------------------------------------------------------------------


def engagement_model(
    *,
    half_life: str = "",
    window: str = "",
    eng_max: str = "",
    points: float = 10,
    cap: str = "",
    min_fit: str = "",
    threshold: float = 50,
) -> Scorer:
    return scorer(
        f"""\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {{field: title, contains: vp}}
              points: 15
        engagement:
          {eng_max}
          {half_life}
          {window}
          rules:
            - name: Pricing page
              event: page
              when: {{field: path, starts_with: /pricing}}
              points: {points}
              {cap}
            - name: Webinar
              event: Webinar Attended
              points: 30
            - name: Demo request
              event: Demo Requested
              points: 45
              fast_track: true
        mql:
          threshold: {threshold}
          {min_fit}
        """
    )


def page(path: str, when: datetime) -> Event:
    return Event("page", when, {"path": path})


def test_event_names_match_ignoring_case_and_surrounding_space() -> None:
    sc = engagement_model()
    events = [
        Event("  webinar ATTENDED\n", ago(1)),
        Event("Webinar-Attended", ago(1)),  # different name
        Event("Webinar  Attended", ago(1)),  # inner space is part of the name
        page("/pricing", ago(1)),
        page("/docs", ago(1)),  # condition does not hold
        Event("Pricing Page", ago(1), {"path": "/pricing"}),  # rule names are not event names
    ]
    s = sc.score({}, events, AS_OF)
    assert s.engagement == 30 + 10
    assert reasons(s) == [("Webinar", 30), ("Pricing page", 10)]


def test_events_after_as_of_do_not_count_and_at_as_of_do() -> None:
    sc = engagement_model()
    assert sc.score({}, [Event("Webinar Attended", AS_OF + US)], AS_OF).engagement == 0
    assert sc.score({}, [Event("Webinar Attended", AS_OF)], AS_OF).engagement == 30


def test_window_edge_counts_exactly_window_days_and_not_one_microsecond_more() -> None:
    sc = engagement_model(window="window_days: 180")
    at_edge = Event("Webinar Attended", AS_OF - timedelta(days=180))
    past_edge = Event("Webinar Attended", AS_OF - timedelta(days=180) - US)
    assert sc.score({}, [at_edge], AS_OF).engagement == 30
    assert sc.score({}, [past_edge], AS_OF).engagement == 0
    assert sc.score({}, [at_edge, past_edge], AS_OF).engagement == 30


def test_fractional_window() -> None:
    sc = engagement_model(window="window_days: 0.5")
    assert sc.score({}, [Event("Webinar Attended", ago(hours=12))], AS_OF).engagement == 30
    assert sc.score({}, [Event("Webinar Attended", ago(hours=12) - US)], AS_OF).engagement == 0


def test_no_window_counts_any_age() -> None:
    sc = engagement_model()
    assert sc.score({}, [Event("Webinar Attended", ago(days=3650))], AS_OF).engagement == 30


def test_half_life_decay() -> None:
    sc = engagement_model(half_life="half_life_days: 30")

    def eng(*days: float) -> float:
        return sc.score({}, [Event("Webinar Attended", ago(d)) for d in days], AS_OF).engagement

    assert eng(0) == 30
    assert eng(30) == 30 * 0.5  # exactly one half-life old: half the points
    assert eng(60) == 30 * 0.25
    assert eng(90) == 30 * 0.125
    assert eng(15) == pytest.approx(30 * 2**-0.5, abs=1e-12)  # 21.2132...
    assert eng(1) == pytest.approx(30 * 0.5 ** (1 / 30), abs=1e-12)  # 29.3171...
    assert eng(0, 30, 60) == 30 + 15 + 7.5
    # ages are exact seconds: 12 hours is half a day
    assert sc.score(
        {}, [Event("Webinar Attended", ago(hours=12))], AS_OF
    ).engagement == pytest.approx(30 * 0.5 ** (0.5 / 30), abs=1e-12)


def test_cap_is_applied_after_decay() -> None:
    sc = engagement_model(half_life="half_life_days: 30", cap="cap: 15")

    def eng(*days: float) -> float:
        return sc.score({}, [page("/pricing", ago(d)) for d in days], AS_OF).engagement

    assert eng(0) == 10
    assert eng(0, 0) == min(10 + 10, 15)
    assert eng(30, 30) == 5 + 5  # 10 after decay, under the cap
    assert eng(0, 30) == 10 + 5  # exactly the cap
    assert eng(0, 30, 60) == min(10 + 5 + 2.5, 15)
    assert eng(60, 60, 60, 60, 60) == min(5 * 2.5, 15)  # 12.5, under the cap


def test_cap_counts_in_the_reason() -> None:
    sc = engagement_model(cap="cap: 15")
    s = sc.score({}, [page("/pricing", ago(d)) for d in (1, 2, 3)], AS_OF)
    assert reasons(s) == [("Pricing page", min(3 * 10, 15))]


def test_engagement_max_lowers_the_sum_of_subtotals() -> None:
    sc = engagement_model(eng_max="max: 60")
    events = [Event("Webinar Attended", ago(1)), Event("Demo Requested", ago(2))]
    s = sc.score({}, events, AS_OF)
    assert s.engagement == min(30 + 45, 60)
    assert reasons(s) == [("Demo request", 45), ("Webinar", 30)]


def test_fast_track_qualifies_below_the_threshold() -> None:
    sc = engagement_model(threshold=100)
    s = sc.score({"title": "VP Sales"}, [Event("Demo Requested", ago(1))], AS_OF)
    assert s.score == 15 + 45
    assert s.fast_track is True
    assert s.mql is True  # 60 < 100, but a demo request qualifies at once


def test_fast_track_needs_a_counted_event() -> None:
    sc = engagement_model(threshold=100, window="window_days: 30")
    future = Event("Demo Requested", AS_OF + US)
    too_old = Event("Demo Requested", ago(30) - US)
    s = sc.score({}, [future, too_old, Event("Webinar Attended", ago(1))], AS_OF)
    assert (s.fast_track, s.mql, s.engagement) == (False, False, 30)


def test_min_fit_blocks_a_fast_tracked_lead() -> None:
    sc = engagement_model(threshold=100, min_fit="min_fit: 20")
    s = sc.score({"title": "VP Sales"}, [Event("Demo Requested", ago(1))], AS_OF)
    assert s.fit == 15
    assert s.fast_track is True
    assert s.mql is False  # 15 < min_fit 20


def test_min_fit_blocks_a_lead_over_the_threshold_and_passes_at_exactly_min_fit() -> None:
    events = [Event("Demo Requested", ago(1)), Event("Webinar Attended", ago(1))]
    blocked = engagement_model(threshold=50, min_fit="min_fit: 20")
    s = blocked.score({"title": "VP"}, events, AS_OF)
    assert s.score == 15 + 45 + 30
    assert s.mql is False  # 90 >= 50, but fit 15 < 20
    at_edge = engagement_model(threshold=50, min_fit="min_fit: 15")
    assert at_edge.score({"title": "VP"}, events, AS_OF).mql is True  # 15 >= 15


def test_threshold_is_inclusive() -> None:
    sc = engagement_model(threshold=45)
    s = sc.score({}, [Event("Demo Requested", ago(1))], AS_OF)
    assert (s.score, s.mql) == (45, True)
    s = sc.score({}, [Event("Webinar Attended", ago(1))], AS_OF)
    assert (s.score, s.mql) == (30, False)


# --- grades --------------------------------------------------------------------------------


def graded(fit_points: float, eng_points: float) -> LeadScore:
    sc = scorer(
        f"""\
        model: 1
        name: t
        fit:
          rules:
            - name: F
              when: {{field: x, exists: true}}
              points: {fit_points}
        engagement:
          rules:
            - name: E
              event: e
              points: {eng_points}
        mql: {{threshold: 50}}
        grades:
          fit: {{A: 40, B: 25, C: 10}}
          engagement: {{1: 40, 2: 20, 3: 5}}
        """
    )
    return sc.score({"x": 1}, [Event("e", ago(1))], AS_OF)


@pytest.mark.parametrize(
    ("fit", "eng", "grade"),
    [
        (40, 40, "A1"),  # exact thresholds belong to the higher grade
        (39.999, 39.999, "B2"),
        (25, 20, "B2"),
        (24.99, 19.99, "C3"),
        (10, 5, "C3"),
        (9.99, 4.99, "D4"),
        (-20, -3, "D4"),
        (100, 0.5, "A4"),
        (0, 40, "D1"),
    ],
)
def test_grades_from_fit_and_engagement(fit: float, eng: float, grade: str) -> None:
    assert graded(fit, eng).grade == grade


def test_no_grades_means_an_empty_grade() -> None:
    s = engagement_model().score({"title": "vp"}, [], AS_OF)
    assert s.grade == ""
    assert s.record("L1")["grade"] == ""


# --- reasons and rounding ------------------------------------------------------------------

REASONS = """\
model: 1
name: t
fit:
  rules:
    - name: Size
      when: {field: size, exists: true}
      points: 15
    - name: Zero
      when: {field: size, exists: true}
      points: 0
    - name: Senior
      when: {field: title, exists: true}
      points: 15
    - name: Personal email
      when: {field: email, ends_with: "@gmail.com"}
      points: -20
engagement:
  rules:
    - name: Pricing page
      event: page
      points: 10
      cap: 15
    - name: Unsubscribed
      event: Unsubscribed
      points: -15
    - name: Never seen
      event: Never
      points: 99
mql: {threshold: 50}
"""


def test_reasons_largest_absolute_first_ties_in_file_order() -> None:
    sc = scorer(REASONS)
    lead = {"size": 300, "title": "VP", "email": "a@gmail.com"}
    events = [Event("page", ago(1)), Event("page", ago(2)), Event("Unsubscribed", ago(3))]
    s = sc.score(lead, events, AS_OF)
    # |-20| first; then the four 15s in file order: Size, Senior, Pricing (capped 20 -> 15),
    # Unsubscribed (-15); Zero and Never seen contribute nothing and are left out
    assert reasons(s) == [
        ("Personal email", -20),
        ("Size", 15),
        ("Senior", 15),
        ("Pricing page", min(10 + 10, 15)),
        ("Unsubscribed", -15),
    ]
    assert s.fit == 15 + 0 + 15 - 20
    assert s.engagement == 15 - 15
    assert s.score == 10


def test_reasons_follow_file_order_even_when_engagement_is_written_first() -> None:
    sc = scorer(
        """\
        model: 1
        name: t
        engagement:
          rules:
            - name: Webinar
              event: Webinar
              points: 5
        fit:
          rules:
            - name: Senior
              when: {field: title, exists: true}
              points: 5
        mql: {threshold: 50}
        """
    )
    s = sc.score({"title": "VP"}, [Event("Webinar", ago(1))], AS_OF)
    assert reasons(s) == [("Webinar", 5), ("Senior", 5)]


def test_record_rounds_to_two_decimals_half_away_from_zero() -> None:
    sc = scorer(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Up
              when: {field: up, exists: true}
              points: 0.125
            - name: Down
              when: {field: down, exists: true}
              points: -0.375
        mql: {threshold: 50}
        """
    )
    # 0.125 and -0.375 are exact in binary, so these are true halves
    up = sc.score({"up": 1}, [], AS_OF).record("L1")
    assert (up["fit"], up["score"]) == (0.13, 0.13)
    assert up["reasons"] == [{"rule": "Up", "points": 0.13}]
    down = sc.score({"down": 1}, [], AS_OF).record("L2")
    assert (down["fit"], down["score"]) == (-0.38, -0.38)
    both = sc.score({"up": 1, "down": 1}, [], AS_OF).record("L3")
    assert both["fit"] == -0.25  # 0.125 - 0.375
    assert both["reasons"] == [
        {"rule": "Down", "points": -0.38},
        {"rule": "Up", "points": 0.13},
    ]


def test_decisions_use_unrounded_scores() -> None:
    sc = scorer(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Almost
              when: {field: x, exists: true}
              points: 39.996
        engagement:
          rules:
            - name: Visit
              event: Visit
              points: 10
        mql: {threshold: 50}
        grades:
          fit: {A: 40, B: 25, C: 10}
          engagement: {1: 40, 2: 20, 3: 5}
        """
    )
    s = sc.score({"x": 1}, [Event("Visit", ago(1))], AS_OF)
    assert s.score == pytest.approx(39.996 + 10)
    rec = s.record("L1")
    assert rec == {
        "lead_id": "L1",
        "fit": 40.0,  # 39.996 prints as 40.0 ...
        "engagement": 10.0,
        "score": 50.0,  # 49.996 prints as 50.0 ...
        "grade": "B3",  # ... but fit 39.996 < 40 is a B
        "mql": False,  # ... and 49.996 < 50 is not an MQL
        "fast_track": False,
        "reasons": [{"rule": "Almost", "points": 40.0}, {"rule": "Visit", "points": 10.0}],
    }


def test_decayed_subtotals_are_rounded_only_in_the_record() -> None:
    sc = engagement_model(half_life="half_life_days: 30")
    s = sc.score({}, [Event("Webinar Attended", ago(15))], AS_OF)
    # 30 * 2 ** -0.5 = 21.213203...
    (reason,) = s.reasons
    assert reason.rule == "Webinar"
    assert reason.points == pytest.approx(30 * 2**-0.5, abs=1e-12)
    assert s.record("L1")["reasons"] == [{"rule": "Webinar", "points": 21.21}]
    assert s.record("L1")["engagement"] == 21.21


# --- time zones ----------------------------------------------------------------------------


def test_naive_timestamps_and_as_of_are_utc() -> None:
    sc = engagement_model()
    naive_as_of = datetime(2024, 6, 1, 12, 0)
    naive_event = Event("Webinar Attended", datetime(2024, 6, 1, 12, 0))
    assert naive_event.timestamp == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert sc.score({}, [naive_event], naive_as_of).engagement == 30
    # 13:30 at +02:00 is 11:30 UTC: counted at a naive 12:00, in the future at a naive 11:00
    plus_two = timezone(timedelta(hours=2))
    ev = Event("Webinar Attended", datetime(2024, 6, 1, 13, 30, tzinfo=plus_two))
    assert sc.score({}, [ev], datetime(2024, 6, 1, 12, 0)).engagement == 30
    assert sc.score({}, [ev], datetime(2024, 6, 1, 11, 0)).engagement == 0


def test_naive_means_utc_whatever_the_machines_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no daylight saving
    time.tzset()
    try:
        ev = Event("Webinar Attended", datetime(2024, 6, 1, 12, 0))
        assert ev.timestamp == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
        sc = engagement_model()
        assert sc.score({}, [ev], datetime(2024, 6, 1, 12, 0)).engagement == 30
        assert sc.score({}, [ev], datetime(2024, 6, 1, 11, 59)).engagement == 0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_decay_ages_across_time_zones_are_exact() -> None:
    sc = engagement_model(half_life="half_life_days: 30")
    # 30 days earlier, written at -05:00: exactly one half-life
    minus_five = timezone(timedelta(hours=-5))
    ev = Event("Webinar Attended", datetime(2024, 5, 2, 7, 0, tzinfo=minus_five))
    assert sc.score({}, [ev], AS_OF).engagement == 30 * 0.5


# --- explain -------------------------------------------------------------------------------


def test_explain_agrees_with_score_and_shows_its_working() -> None:
    sc = engagement_model(
        half_life="half_life_days: 30", window="window_days: 90", cap="cap: 15", eng_max="max: 60"
    )
    traits = {"title": "VP Marketing"}
    events = [
        page("/pricing", ago(0)),  # 10
        page("/pricing", ago(30)),  # 5
        page("/pricing", ago(60)),  # 2.5 -> subtotal 17.5, capped at 15
        page("/docs", ago(1)),  # matches no rule
        Event("Webinar Attended", ago(30)),  # 15
        Event("Demo Requested", AS_OF + US),  # in the future
        Event("Demo Requested", ago(90) - US),  # outside the window
    ]
    ex = sc.explain(traits, events, AS_OF)
    s = sc.score(traits, events, AS_OF)
    assert ex.score == s
    assert s.fit == 15
    assert s.engagement == min(10 + 5 + 2.5, 15) + 30 * 0.5
    assert s.score == 15 + 15 + 15
    assert (s.fast_track, s.mql) == (False, False)
    assert ex.as_of == AS_OF
    assert ex.fit_raw == 15
    assert ex.engagement_raw == 15 + 15
    assert (ex.ignored_future, ex.ignored_old, ex.unmatched_events) == (1, 1, 1)

    by_name = {r.rule.name: r for r in ex.rules}
    assert [r.rule.name for r in ex.rules] == ["Senior", "Pricing page", "Webinar", "Demo request"]
    senior = by_name["Senior"]
    assert (senior.matched, senior.raw, senior.points) == (True, 15, 15)
    assert senior.values == (("title", "VP Marketing"),)
    pricing = by_name["Pricing page"]
    assert (pricing.matched, pricing.raw, pricing.points) == (True, 10 + 5 + 2.5, 15)
    assert [(c.age_days, c.points) for c in pricing.events] == [(0, 10), (30, 5), (60, 2.5)]
    webinar = by_name["Webinar"]
    assert (webinar.matched, webinar.raw, webinar.points) == (True, 15, 15)
    demo = by_name["Demo request"]
    assert (demo.matched, demo.raw, demo.points, demo.events) == (False, 0, 0, ())
    # the explanation adds up to the score
    rule_points = sum(r.points for r in ex.rules)
    assert rule_points == s.score


def test_explain_reports_fit_before_fit_max() -> None:
    sc = scorer(FIT.format(max="max: 30"))
    ex = sc.explain(ICP_LEAD, [], AS_OF)
    assert ex.fit_raw == 15 + 15 + 10
    assert ex.score.fit == 30
    assert [(r.rule.name, r.matched, r.points) for r in ex.rules] == [
        ("Size", True, 15),
        ("Senior", True, 15),
        ("Software", True, 10),
        ("Personal email", False, 0),
    ]
    assert dict(ex.rules[0].values) == {"company.employees": 300}
    assert dict(ex.rules[3].values) == {"email": "ann@acme.io"}


# --- the worked example in docs/model.md ---------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "model.md"


def test_docs_worked_example() -> None:
    text = DOCS.read_text(encoding="utf-8")
    annotated = re.search(r"```yaml\n(.*?)```", text, flags=re.S)
    assert annotated
    sc = Scorer(parse_model(annotated.group(1), "docs/model.md"))
    lead = {
        "title": "VP of Marketing",
        "email": "dana@northwind.io",
        "company": {"employees": "1200"},
    }
    events = [
        page("/pricing", ago(2)),
        page("/pricing/enterprise", ago(30)),
        page("/pricing", ago(60)),
        page("/pricing", ago(200)),  # outside the 180-day window
        page("/blog/scoring", ago(1)),  # not a pricing page
        *(Event("Email Opened", ago(d)) for d in range(1, 9)),
    ]
    s = sc.score(lead, events, AS_OF)
    pricing = 10 * 0.5 ** (2 / 30) + 10 * 0.5 + 10 * 0.25
    opens = sum(0.5 ** (d / 30) for d in range(1, 9))
    assert opens == pytest.approx(7.2201, abs=1e-4)
    assert s.fit == 15 + 15
    assert s.engagement == pytest.approx(pricing + min(opens, 5), abs=1e-12)
    assert s.score == pytest.approx(30 + 17.0484 + 5, abs=1e-4)
    assert (s.grade, s.mql, s.fast_track) == ("B2", True, False)

    shown = re.search(r"<!-- worked-example-record -->\n```json\n(.*?)\n```", text, flags=re.S)
    assert shown
    assert s.record("lead-1") == json.loads(shown.group(1))

    second = sc.score(
        {"title": "Student", "email": "sam@gmail.com", "company": {"employees": "n/a"}},
        [Event("Demo Requested", ago(1))],
        AS_OF,
    )
    assert second.fit == -20
    assert second.engagement == pytest.approx(45 * 0.5 ** (1 / 30), abs=1e-12)  # 43.97
    assert (second.grade, second.fast_track, second.mql) == ("D1", True, False)
