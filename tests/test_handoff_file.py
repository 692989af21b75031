"""The routing file: the issue's example as written, every key, and every mistake with its place."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from leadscore.errors import ModelError, RoutingError
from leadscore.handoff import load_routing, parse_routing, rep_key
from leadscore.model.schema import All, Leaf

from .handoff_helpers import ISSUE_EXAMPLE

FILE = "routing.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(RoutingError) as info:
        parse_routing(textwrap.dedent(text), FILE)
    return [str(p) for p in info.value.problems]


def test_the_issue_example_reads_as_written():
    r = parse_routing(ISSUE_EXAMPLE, FILE)
    assert r.name == "acme-sales"
    assert list(r.teams) == ["enterprise", "smb"]
    ent = r.teams["enterprise"]
    assert ent.members == ("ann@acme.io", "raj@acme.io")
    assert ent.max_open_mqls == 25
    assert ent.working_hours is not None
    assert ent.working_hours.timezone == "America/New_York"
    assert ent.working_hours.days == (0, 1, 2, 3, 4)
    assert (ent.working_hours.start, ent.working_hours.end) == (9 * 60, 18 * 60)
    assert r.teams["smb"].max_open_mqls is None and r.teams["smb"].working_hours is None
    assert [(x.name, x.team, x.owner) for x in r.rules] == [
        ("Enterprise North America", "enterprise", None),
        ("Everyone else", "smb", None),
    ]
    when = r.rules[0].when
    assert isinstance(when, All)
    assert when.conditions[1] == Leaf("country", ("country",), "in", ("us", "ca"))
    assert r.rules[1].when is None
    assert r.fallback == "lee@acme.io"
    assert [(s.name, s.first_touch_within_us, s.escalate_to, s.working_hours) for s in r.sla] == [
        ("Demo within 5 minutes", 300_000_000, "lee@acme.io", False),
        ("Other MQLs within a business day", 86_400_000_000, None, True),
    ]
    assert r.rejection_reasons == (
        "bad fit",
        "no intent",
        "wrong contact",
        "duplicate",
        "competitor",
        "student",
    )
    assert r.crm_stages == {}
    assert len(r.digest) == 12 and r.source == ISSUE_EXAMPLE


def test_every_optional_key():
    r = parse_routing(
        textwrap.dedent(
            """\
            routing: 1
            name: full
            description: Every key at once
            working_hours: {timezone: Europe/Paris, days: [mon, tue, thu], hours: "08:30-17:00"}
            teams:
              emea:
                members: [Ann@Acme.io]
                working_hours: {timezone: Europe/Berlin, hours: "09:00-24:00"}
            rules:
              - name: Key account
                when: {field: company.domain, equals: big.example}
                owner: boss@acme.io
                description: one rep owns the biggest account
              - name: Rest
                team: emea
            fallback: lee@acme.io
            sla:
              - name: All
                first_touch_within: 1h30m
                working_hours: false
                description: plain clock
            crm_stages:
              Working: sal
              "Closed Won": customer
              Nurture: recycled
            """
        ),
        FILE,
    )
    assert r.description == "Every key at once"
    assert r.working_hours is not None and r.working_hours.days == (0, 1, 3)
    assert (r.working_hours.start, r.working_hours.end) == (510, 1020)
    hours = r.teams["emea"].working_hours
    assert hours is not None and hours.days == (0, 1, 2, 3, 4) and hours.end == 1440
    assert r.teams["emea"].members == ("ann@acme.io",)
    assert r.rules[0].owner == "boss@acme.io" and r.rules[0].team is None
    assert r.sla[0].first_touch_within_us == 5_400_000_000
    assert r.crm_stages == {"working": "sal", "closed won": "customer", "nurture": "recycled"}


def test_routing_error_is_a_model_error_and_says_routing_file():
    with pytest.raises(ModelError) as info:
        parse_routing("routing: 1\n", FILE)
    assert isinstance(info.value, RoutingError)
    assert str(info.value).startswith("the routing file has 2 problems:")


BAD = [
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        teems: {}
        """,
        [f"{FILE}:4:1: unknown key 'teems' in the routing file — did you mean 'teams'?"],
        id="misspelt-top-key",
    ),
    pytest.param(
        """\
        routing: 2
        name: x
        """,
        [
            f"{FILE}:1:1: the routing file has no 'fallback' (the rep who takes a lead nobody "
            "else can; e.g. 'fallback: lee@acme.io')",
            f"{FILE}:1:10: 'routing' must be 1 (the only format version), not the number 2",
        ],
        id="version-and-fallback",
    ),
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        teams:
          smb:
            members: [lee@acme.io]
            max_open_mqls: 2.5
        rules:
          - name: All
            team: smbb
        """,
        [
            f"{FILE}:7:20: 'max_open_mqls' of team 'smb' must be a whole number",
            f"{FILE}:10:11: routing rule 'All' names team 'smbb', which is not in 'teams' "
            "— did you mean 'smb'?",
        ],
        id="bad-cap-and-team",
    ),
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee
        teams:
          smb:
            members: [lee@acme.io, lee@acme.io]
            working_hours: {timezone: America/New_Yrok, days: mon-fry, hours: "18:00-09:00"}
        """,
        [
            f"{FILE}:3:11: 'fallback' must be a rep's email address, not 'lee'",
            f"{FILE}:6:28: lee@acme.io is listed twice in team 'smb'; a rep takes one turn "
            "per round",
            f"{FILE}:7:31: unknown time zone 'America/New_Yrok' in 'working_hours' of team "
            "'smb' — did you mean 'America/New_York'?",
            f"{FILE}:7:55: 'days' in 'working_hours' of team 'smb': 'fry' is not a day; write "
            "days as mon, tue, wed, thu, fri, sat, sun (write them like mon-fri or mon,wed,fri)",
            f"{FILE}:7:71: 'hours' in 'working_hours' of team 'smb': the hours end (09:00) must "
            "be after they start (18:00); an opening cannot cross midnight",
        ],
        id="bad-team",
    ),
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        teams: {smb: {members: [lee@acme.io]}}
        rules:
          - name: Both
            when: {field: title, exists: true}
            team: smb
            owner: lee@acme.io
          - name: Bad condition
            when: {field: country, inn: [US]}
            team: smb
          - name: Neither
        """,
        [
            f"{FILE}:6:5: routing rule 'Both' needs one of 'team' (round robin in a team) or "
            "'owner' (one rep), not both",
            f"{FILE}:11:11: the condition on 'country' in routing rule 'Bad condition' has no "
            "operator; add one of: equals, in, not_in, gt, gte, lt, lte, between, contains, "
            "starts_with, ends_with, matches, exists",
            f"{FILE}:11:28: unknown key 'inn' in the condition of routing rule 'Bad condition' "
            "— did you mean 'in'?",
            f"{FILE}:13:5: routing rule 'Neither' needs one of 'team' (round robin in a team) "
            "or 'owner' (one rep)",
        ],
        id="bad-rules",
    ),
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        teams: {smb: {members: [lee@acme.io]}}
        rules:
          - name: Everyone
            team: smb
          - name: Never
            when: {field: country, equals: US}
            team: smb
        """,
        [
            f"{FILE}:8:5: routing rule 'Never' is never used: routing rule 'Everyone' on line 6 "
            "has no 'when' and takes every lead first (routing rules are tried in order, first "
            "match wins)",
        ],
        id="unreachable-rule",
    ),
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        sla:
          - name: Fast
            first_touch_within: 5
            escalate_to: nobody
          - name: Hours
            first_touch_within: 1w
            working_hours: true
          - name: Fast
            first_touch_within: 1h
            workin_hours: yes
        """,
        [
            f"{FILE}:6:25: 'first_touch_within' of sla rule 'Fast' must be a duration above "
            "zero with a unit (s, m, h, d), like 5m, 24h or 1h30m, not the number 5",
            f"{FILE}:7:18: 'escalate_to' of sla rule 'Fast' must be a rep's email address, not "
            "'nobody'",
            f"{FILE}:8:5: sla rule 'Hours' is never used: sla rule 'Fast' on line 5 has no "
            "'when' and takes every lead first (sla rules are tried in order, first match wins)",
            f"{FILE}:9:25: 'first_touch_within' of sla rule 'Hours' must be a duration above "
            "zero with a unit (s, m, h, d), like 5m, 24h or 1h30m, not the text '1w'",
            f"{FILE}:10:20: 'working_hours: true' in sla rule 'Hours' has no hours to follow: "
            "give a team 'working_hours', or the routing file a 'working_hours' for every team",
            f"{FILE}:11:11: rule name 'Fast' is already used on line 5; rule names must be unique",
            f"{FILE}:13:5: unknown key 'workin_hours' in sla rule 'Fast' — did you mean "
            "'working_hours'?",
        ],
        id="bad-sla",
    ),
    pytest.param(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        rejection_reasons: [bad fit, Bad Fit]
        crm_stages:
          Working: sall
          working: sal
          Won: [customer]
        """,
        [
            f"{FILE}:4:30: rejection reason 'Bad Fit' is listed twice",
            f"{FILE}:6:12: CRM status 'Working' maps to 'sall', which is not a stage — did you "
            "mean 'sal'?",
            f"{FILE}:8:8: CRM status 'Won' maps to a list (one of: lead, mql, sal, sql, "
            "opportunity, customer, recycled, disqualified)",
        ],
        id="bad-reasons-and-crm",
    ),
    pytest.param(
        "routing: 1\nname: [x\n",
        [f"{FILE}:3:1: this is not valid YAML: expected ',' or ']', but got '<stream end>'"],
        id="not-yaml",
    ),
    pytest.param(
        "",
        [f"{FILE}:1:1: the routing file is empty; docs/handoff.md shows one to start from"],
        id="empty",
    ),
]


@pytest.mark.parametrize("text,expected", BAD)
def test_every_problem_with_its_place_and_fix(text, expected):
    assert problems(text) == expected


def test_a_duplicate_crm_status_ignoring_case_is_reported():
    found = problems(
        """\
        routing: 1
        name: x
        fallback: lee@acme.io
        crm_stages: {Working: sal, WORKING: sql}
        """
    )
    assert found == [
        f"{FILE}:4:28: CRM status 'WORKING' is mapped twice in 'crm_stages' (case is ignored)"
    ]


def test_load_routing_names_a_missing_file(tmp_path: Path):
    with pytest.raises(RoutingError) as info:
        load_routing(tmp_path / "nope.yaml")
    assert str(info.value.problems[0]).endswith(
        "nope.yaml:1:1: no such file; give the path of a routing file (docs/handoff.md)"
    )
    good = tmp_path / "routing.yaml"
    good.write_text(ISSUE_EXAMPLE, encoding="utf-8")
    assert load_routing(good).file == str(good)


def test_the_docs_show_the_issue_example_and_every_key():
    from leadscore.handoff import reader

    text = (Path(__file__).resolve().parents[1] / "docs" / "handoff.md").read_text("utf-8")
    assert "```yaml\n" + ISSUE_EXAMPLE + "```" in text
    keys = {
        *reader.TOP_KEYS,
        *reader.TEAM_KEYS,
        *reader.HOURS_KEYS,
        *reader.RULE_KEYS,
        *reader.SLA_KEYS,
    }
    assert sorted(k for k in keys if f"| `{k}` |" not in text) == []


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Ann@Acme.IO", "ann@acme.io"),
        ("  lee@acme.io\t", "lee@acme.io"),
        ("CRM", "CRM"),  # not an address: kept as written
        ("cli", "cli"),
    ],
)
def test_a_rep_is_the_same_whatever_the_case_of_the_email(written, key):
    assert rep_key(written) == key
