"""Hypothesis strategies for random models and data, shared by the parity tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import strategies as st

AS_OF = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)

LEAD_FIELDS = ["title", "email", "country", "company.employees", "company.industry", "rating"]
LEAD_VALUES: list[Any] = [
    "VP Sales",
    "  vp sales ",
    "Director of IT",
    "n/a",
    "",
    "   ",
    "250",
    " 250 ",
    "1e3",
    "-3.5",
    ".5",
    "Software",
    "SOFTWARE ",
    "x@GMAIL.com",
    " a@acme.io",
    "DE",
    "de",
    "true",
    "Head of Ops",
    "Select",
    " select ",
    "-",
    "N/A",
    250,
    250.5,
    0,
    -3,
    5000,
    1000.0,
    True,
    False,
    None,
]
EVENT_NAMES = [
    "page",
    "Page",
    " PAGE ",
    "Email Opened",
    "email opened",
    "Demo Requested",
    "Webinar",
    "Other",
]
RULE_EVENTS = ["page", "Email Opened", "Demo Requested", "Webinar"]
PROP_FIELDS = ["path", "plan", "seats", "utm.source"]
PROP_VALUES: list[Any] = [
    "/pricing",
    "/Pricing/enterprise ",
    "/blog/post",
    "pro",
    "Enterprise",
    "n/a",
    "",
    "3",
    " 12 ",
    3,
    12.5,
    0,
    True,
    None,
    "google",
    "GOOGLE ",
    "Select",
    "-",
]

TEXT_OPERANDS = [
    "select",
    "vp sales",
    "VP",
    "sales",
    "de",
    "250",
    "gmail.com",
    "@gmail.com",
    "/pricing",
    "pro",
    "enterprise",
    "software",
    "true",
    "director",
    "google",
    "n/a",
    "3",
]
#: rule names as people write them: each engine must give them back unchanged in the reasons
RULE_NAMES = [
    "rule",
    "${var} costs $5",
    "Won't buy",
    'Said "maybe"',
    "C:\\new",
    "50% off",
    "Zürich — 東京",
    "two\nlines",
]
REGEXES = ["vp|director", "^d", "[0-9]+$", "s.les", "^/pricing", "(pro|enterprise)$", "o+g"]
NUMBERS = [0, 3, 12, 100, 250, 250.5, -3.5, 1000, 5000]
#: behaviour stored on the lead: counts and amounts, and the date they were last updated
COUNT_FIELDS = ["visits", "rating", "company.employees"]
COUNT_VALUES: list[Any] = [3, 0, -2, 2.5, "7", " 12 ", "n/a", "Select", "", None, "1e3", 0.25]
DATE_VALUES: list[Any] = [
    "2026-06-01T12:00:00Z",  # as_of itself
    "2026-06-01 12:00:00.000001",  # a microsecond after as_of: not yet
    "2026-05-02T12:00:00",  # exactly 30 days old
    "2026-05-02T11:59:59.999999",  # a microsecond over 30 days
    "2026-03-03t12:00z",  # 90 days, lower case
    "2026-05-25",
    " 2026-05-31 08:15 ",
    "2026-02-30",  # read as 2 March
    "2026-05-01T10:00:00+02:00",  # an offset: not a date
    "2026-13-01",
    "yesterday",
    "Select",
    "",
    None,
    "1999-12-31T23:59:59.5",
    20260501,
]
MISSING_VALUES: list[Any] = ["Select", "N/A", "-", "unknown", " PRO ", 0, 3]


def leaf(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(fields)
    return st.one_of(
        st.builds(
            lambda f, v: {"field": f, "equals": v}, field, st.sampled_from(TEXT_OPERANDS + NUMBERS)
        ),
        st.builds(
            lambda f, v: {"field": f, "in": v},
            field,
            st.lists(st.sampled_from(TEXT_OPERANDS + NUMBERS), min_size=1, max_size=3),
        ),
        st.builds(
            lambda f, v: {"field": f, "not_in": v},
            field,
            st.lists(st.sampled_from(TEXT_OPERANDS + NUMBERS), min_size=1, max_size=3),
        ),
        st.builds(
            lambda f, o, v: {"field": f, o: v},
            field,
            st.sampled_from(["gt", "gte", "lt", "lte"]),
            st.sampled_from(NUMBERS),
        ),
        st.builds(
            lambda f, a, b: {"field": f, "between": sorted([a, b])},
            field,
            st.sampled_from(NUMBERS),
            st.sampled_from(NUMBERS),
        ),
        st.builds(
            lambda f, o, v: {"field": f, o: v},
            field,
            st.sampled_from(["contains", "starts_with", "ends_with"]),
            st.sampled_from(TEXT_OPERANDS),
        ),
        st.builds(lambda f, v: {"field": f, "matches": v}, field, st.sampled_from(REGEXES)),
        st.builds(lambda f, v: {"field": f, "exists": v}, field, st.booleans()),
    )


def condition(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf(fields),
        lambda inner: st.one_of(
            st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"not": c}, inner),
        ),
        max_leaves=4,
    )


points = st.one_of(st.integers(-30, 40), st.sampled_from([0.5, 2.25, 7.75, -12.5]))


@st.composite
def models(draw: st.DrawFn) -> str:
    fit_rules = [
        {
            "name": f"{draw(st.sampled_from(RULE_NAMES))} fit {i}",
            "when": draw(condition(LEAD_FIELDS)),
            "points": draw(points),
        }
        for i in range(draw(st.integers(0, 4)))
    ]
    eng_rules = []
    for i in range(draw(st.integers(0, 4))):
        pts = draw(st.one_of(st.integers(1, 30), st.sampled_from([0.5, 2.25, -5])))
        rule: dict[str, Any] = {
            "name": f"{draw(st.sampled_from(RULE_NAMES))} eng {i}",
            "event": draw(st.sampled_from(RULE_EVENTS)),
            "points": pts,
        }
        if draw(st.booleans()):
            rule["when"] = draw(condition(PROP_FIELDS))
        if pts > 0 and draw(st.booleans()):
            rule["cap"] = draw(st.sampled_from([1, 5, 10, 12.5, 30]))
        if draw(st.integers(0, 4)) == 0:
            rule["fast_track"] = True
        if draw(st.integers(0, 2)) == 0:  # a trait rule: a count on the lead, maybe dated
            del rule["event"]
            rule.pop("when", None)
            rule["trait"] = draw(st.sampled_from(COUNT_FIELDS))
            if draw(st.booleans()):
                rule["at"] = "last_seen"
        eng_rules.append(rule)
    doc: dict[str, Any] = {"model": 1, "name": "generated"}
    if draw(st.booleans()):
        # placeholders a CRM writes for "not answered", read as missing by every engine
        doc["missing_values"] = draw(
            st.lists(st.sampled_from(MISSING_VALUES), min_size=1, max_size=3, unique=True)
        )
    if fit_rules or draw(st.booleans()):
        doc["fit"] = {"rules": fit_rules}
        if draw(st.booleans()):
            doc["fit"]["max"] = draw(st.sampled_from([10, 25, 40]))
    eng: dict[str, Any] = {"rules": eng_rules}
    if draw(st.booleans()):
        eng["max"] = draw(st.sampled_from([15, 40, 60]))
    hl = draw(st.sampled_from([None, 14, 30, 0.5]))
    if hl is not None:
        eng["half_life_days"] = hl
    win = draw(st.sampled_from([None, 30, 90, 7.5]))
    if win is not None:
        eng["window_days"] = win
    doc["engagement"] = eng
    doc["mql"] = {"threshold": draw(st.sampled_from([10, 25, 50]))}
    if draw(st.booleans()):
        doc["mql"]["min_fit"] = draw(st.sampled_from([-10, 0, 15]))
    if draw(st.booleans()):
        doc["grades"] = {"fit": {"A": 40, "B": 25, "C": 10}, "engagement": {1: 40, 2: 20, 3: 5}}
    return yaml.safe_dump(doc, sort_keys=False)


def _nested_set(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


@st.composite
def traits(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in LEAD_FIELDS:
        if draw(st.booleans()):
            _nested_set(out, f, draw(st.sampled_from(LEAD_VALUES)))
    if draw(st.booleans()):
        out["visits"] = draw(st.sampled_from(COUNT_VALUES))
    if draw(st.booleans()):
        out["last_seen"] = draw(st.sampled_from(DATE_VALUES))
    return out


@st.composite
def properties(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in PROP_FIELDS:
        if draw(st.booleans()):
            _nested_set(out, f, draw(st.sampled_from(PROP_VALUES)))
    return out


EDGE_AGES = [
    timedelta(0),
    timedelta(microseconds=-1),
    timedelta(days=30),
    timedelta(days=30, microseconds=1),
    timedelta(days=90),
    timedelta(days=90, microseconds=1),
    timedelta(days=7.5),
    timedelta(days=7.5, microseconds=1),
    timedelta(days=14),
    timedelta(hours=12),
]


@st.composite
def events(draw: st.DrawFn) -> list[tuple[str, datetime, dict[str, Any]]]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            age = draw(st.sampled_from(EDGE_AGES))
        else:
            age = timedelta(
                seconds=draw(st.integers(-5 * 86400, 200 * 86400)),
                microseconds=draw(st.integers(0, 999_999)),
            )
        out.append((draw(st.sampled_from(EVENT_NAMES)), AS_OF - age, draw(properties())))
    return out


@st.composite
def datasets(
    draw: st.DrawFn,
) -> list[tuple[str, dict[str, Any], list[tuple[str, datetime, dict[str, Any]]]]]:
    n = draw(st.integers(1, 5))
    return [(f"L{i}", draw(traits()), draw(events())) for i in range(n)]
