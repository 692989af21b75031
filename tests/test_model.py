"""Validation of the model language: every rule in the spec's "Validation" section.

Each case pins the exact ``FILE:LINE:COLUMN: message`` lines a user sees, so a change in where
an error points or what it suggests is a deliberate one. Valid models (the spec's example and
every model shipped under examples/ and leadscore/templates/) must load and score.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadscore.engine import Scorer
from leadscore.errors import LeadscoreError, ModelError, Problem
from leadscore.model import Leaf, load_model, parse_model

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec" / "scoring-model.md"
FILE = "leadscore.yaml"


def problems(text: str) -> list[str]:
    """The problems parse_model reports for a model text, as the user reads them."""
    with pytest.raises(ModelError) as info:
        parse_model(textwrap.dedent(text), FILE)
    return [str(p) for p in info.value.problems]


# (id, model text, every problem expected, in order)
INVALID = [
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior title
              when: {field: title, contains: vp}
              pionts: 10
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:5:7: fit rule 'Senior title' has no 'points'",
            f"{FILE}:7:7: unknown key 'pionts' in fit rule 'Senior title' — did you mean 'points'?",
        ],
        id="misspelt-points",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        engagment:
          rules: []
        mql: {treshold: 50}
        """,
        [
            f"{FILE}:3:1: unknown key 'engagment' in the model — did you mean 'engagement'?",
            f"{FILE}:5:6: 'mql' has no 'threshold' (the score that makes an MQL)",
            f"{FILE}:5:7: unknown key 'treshold' in 'mql' — did you mean 'threshold'?",
        ],
        id="misspelt-section-and-threshold",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        engagement:
          half_life_day: 30
          rules:
            - name: Demo
              event: Demo Requested
              points: 45
              fast_trak: true
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:4:3: unknown key 'half_life_day' in 'engagement' — did you mean 'half_life_days'?",
            f"{FILE}:9:7: unknown key 'fast_trak' in engagement rule 'Demo' — did you mean 'fast_track'?",
        ],
        id="misspelt-engagement-keys",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {fild: title, contians: vp}
              points: 10
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:13: a condition in fit rule 'Senior' has no 'field' (the trait or property to test)",
            f"{FILE}:6:14: unknown key 'fild' in the condition of fit rule 'Senior' — did you mean 'field'?",
            f"{FILE}:6:27: unknown key 'contians' in the condition of fit rule 'Senior' — did you mean 'contains'?",
        ],
        id="misspelt-field-and-operator",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        mql: {threshold: 50}
        grades:
          fit: {A: 40, B: 25, c: 10}
          engagement: {1: 40, 2: 20, 3: 5}
        """,
        [f"{FILE}:5:23: unknown key 'c' in 'grades.fit' (expected one of: A, B, C)"],
        id="unknown-grade-key-lists-the-allowed-ones",
    ),
    pytest.param(
        """\
        description: no header
        fit:
          rules: []
        """,
        [
            f"{FILE}:1:1: the model has no 'model' (the format version; write 'model: 1')",
            f"{FILE}:1:1: the model has no 'name'",
            f"{FILE}:1:1: the model has no 'mql' section; add 'mql: {{threshold: 50}}'",
        ],
        id="missing-model-name-mql",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        mql:
          min_fit: 10
        """,
        [f"{FILE}:4:3: 'mql' has no 'threshold' (the score that makes an MQL)"],
        id="missing-threshold",
    ),
    pytest.param(
        "model: 2\nname: t\nmql: {threshold: 50}\n",
        [f"{FILE}:1:8: 'model' must be 1 (the only format version), not the number 2"],
        id="model-2",
    ),
    pytest.param(
        "model: '1'\nname: t\nmql: {threshold: 50}\n",
        [f"{FILE}:1:8: 'model' must be 1 (the only format version), not the text '1'"],
        id="model-as-text",
    ),
    pytest.param(
        "model: true\nname: t\nmql: {threshold: 50}\n",
        [f"{FILE}:1:8: 'model' must be 1 (the only format version), not the boolean 'true'"],
        id="model-as-boolean",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior title
              when: {field: title, contains: vp}
              points: 10
        engagement:
          rules:
            - name: senior TITLE
              event: Demo Requested
              points: 1
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:10:13: rule name 'senior TITLE' is already used on line 5; "
            "rule names must be unique"
        ],
        id="duplicate-rule-name-ignoring-case-across-sections",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        name: u
        mql: {threshold: 50}
        """,
        [f"{FILE}:3:1: 'name' is given twice in the model; keep one"],
        id="duplicate-key",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Title given
              when: {field: title}
              points: 10
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:13: the condition on 'title' in fit rule 'Title given' has no operator; "
            "add one of: equals, in, not_in, gt, gte, lt, lte, between, contains, starts_with, "
            "ends_with, matches, exists"
        ],
        id="leaf-without-operator",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: CTO
              when: {field: title, contains: vp, equals: cto}
              points: 10
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:42: the condition on 'title' in fit rule 'CTO' has 2 operators "
            "('contains', 'equals'); a condition takes exactly one — combine conditions with "
            "'all' or 'any'"
        ],
        id="leaf-with-two-operators",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Size
              when: {field: company.employees, between: [5000, 200]}
              points: 15
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:49: 'between' on 'company.employees' has low 5000 above high 200; "
            "write [200, 5000]"
        ],
        id="between-low-above-high",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {field: title, matches: "vp|(chief"}
              points: 15
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:37: 'matches' on 'title' is not a valid regular expression: "
            "missing ), unterminated subpattern at position 3"
        ],
        id="invalid-regex",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {field: title, matches: '\\bvp\\b'}
              points: 15
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:37: 'matches' on 'title' uses '\\b', which engines read differently; "
            "write the characters out, e.g. [0-9] or a literal"
        ],
        id="non-portable-regex-escape",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {field: title, matches: "(?i)vp"}
              points: 15
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:37: 'matches' on 'title' uses '(?…)' (flags, look-around or named "
            "groups), which not every engine reads; matching already ignores case"
        ],
        id="non-portable-regex-flags",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        engagement:
          rules:
            - name: Unsubscribed
              event: Unsubscribed
              points: -5
              cap: 10
            - name: Nothing
              event: Noop
              points: 0
              cap: 10
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:8:7: 'cap' of engagement rule 'Unsubscribed' needs positive points; "
            "a cap limits what a rule adds, and this rule gives -5",
            f"{FILE}:12:7: 'cap' of engagement rule 'Nothing' needs positive points; "
            "a cap limits what a rule adds, and this rule gives 0",
        ],
        id="cap-on-non-positive-points",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - {name: Huge, when: {field: a, exists: true}, points: 1.0e+308}
            - {name: Also huge, when: {field: a, exists: true}, points: 1.0e+308}
            - {name: At the bound, when: {field: a, exists: true}, points: -1000000}
        engagement:
          rules:
            - name: Opens
              event: Email Opened
              points: -1000000.5
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:5:60: 'points' of fit rule 'Huge' is 1.0e+308; points must be between "
            "-1,000,000 and 1,000,000 (write the points on a smaller scale, and the threshold "
            "with them)",
            f"{FILE}:6:65: 'points' of fit rule 'Also huge' is 1.0e+308; points must be between "
            "-1,000,000 and 1,000,000 (write the points on a smaller scale, and the threshold "
            "with them)",
            f"{FILE}:12:15: 'points' of engagement rule 'Opens' is -1000000.5; points must be "
            "between -1,000,000 and 1,000,000 (write the points on a smaller scale, and the "
            "threshold with them)",
        ],
        id="points-beyond-a-million",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        engagement:
          rules:
            - name: Opens
              event: Email Opened
              points: 1
              cap: 0
        mql: {threshold: 50}
        """,
        [f"{FILE}:8:12: 'cap' of engagement rule 'Opens' must be greater than 0, not 0"],
        id="cap-not-positive",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {field: title, contains: vp}
              points: 10
              fast_track: true
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:8:7: 'fast_track' in fit rule 'Senior' belongs to engagement rules only; "
            "fit rules score traits, not events"
        ],
        id="fast-track-on-fit-rule",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              points: 10
        mql: {threshold: 50}
        """,
        [f"{FILE}:5:7: fit rule 'Senior' has no 'when'"],
        id="fit-rule-without-when",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        engagement:
          half_life_days: 0
          window_days: -3
          rules: []
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:4:19: 'engagement.half_life_days' must be greater than 0, not 0",
            f"{FILE}:5:16: 'engagement.window_days' must be greater than 0, not -3",
        ],
        id="non-positive-half-life-and-window",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        mql: {threshold: 50}
        grades:
          fit: {A: 40, B: 40, C: 10}
          engagement: {1: 5, 2: 20, 3: 40}
        """,
        [
            f"{FILE}:5:8: 'grades.fit' thresholds must descend (A > B > C); got 40, 40, 10",
            f"{FILE}:6:15: 'grades.engagement' thresholds must descend (1 > 2 > 3); got 5, 20, 40",
        ],
        id="grades-not-descending",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Senior
              when: {field: title, contains: vp}
              points: "ten"
        mql: {threshold: fifty}
        """,
        [
            f"{FILE}:7:15: 'points' of fit rule 'Senior' must be a number, not the text 'ten'",
            f"{FILE}:8:18: 'mql.threshold' must be a number, not the text 'fifty'",
        ],
        id="text-where-a-number-belongs",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Has phone
              when: {field: phone, exists: maybe}
              points: [1]
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:36: 'exists' on 'phone' must be true or false, not the text 'maybe'",
            f"{FILE}:7:15: 'points' of fit rule 'Has phone' must be a number, not a list",
        ],
        id="wrong-types-in-condition-and-points",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules:
            - name: Size
              when: {field: company.employees, gt: lots}
              points: 1
            - name: Title
              when: {field: title, equals: null}
              points: 1
        mql: {threshold: 50}
        """,
        [
            f"{FILE}:6:44: 'gt' on 'company.employees' must be a number, not the text 'lots'",
            f"{FILE}:9:36: 'equals' on 'title' needs a value; "
            "to test for a missing field use 'exists: false'",
        ],
        id="bad-operands",
    ),
    pytest.param(
        "",
        [f"{FILE}:1:1: the model file is empty; `leadscore init` writes a starter model"],
        id="empty-file",
    ),
    pytest.param(
        "# only a comment\n",
        [f"{FILE}:1:1: the model file is empty; `leadscore init` writes a starter model"],
        id="only-comments",
    ),
    pytest.param(
        "- model: 1\n- name: t\n",
        [f"{FILE}:1:1: the model must be a mapping, not a list"],
        id="not-a-mapping",
    ),
    pytest.param(
        """\
        model: 1
        name: t
          threshold: 50
        """,
        [f"{FILE}:3:12: this is not valid YAML: mapping values are not allowed here"],
        id="yaml-syntax-error",
    ),
    pytest.param(
        """\
        model: 1
        name: t
        fit:
          rules: [
            {name: Senior, when: {field: title, contains: vp}
        """,
        [f"{FILE}:6:1: this is not valid YAML: expected ',' or '}}', but got '<stream end>'"],
        id="yaml-unclosed-bracket",
    ),
    pytest.param(
        "model: 1\n\tname: t\n",
        [f"{FILE}:2:1: this is not valid YAML: found character '\\t' that cannot start any token"],
        id="yaml-tab-indent",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_model_reports_every_problem_where_it_is(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_problem_carries_file_line_column_and_the_error_lists_them_all() -> None:
    text = "model: 1\nname: t\nmql: {threshold: 50, min_fitt: 20}\n"
    with pytest.raises(ModelError) as info:
        parse_model(text, "models/acme.yaml")
    err = info.value
    assert isinstance(err, LeadscoreError)
    assert err.problems == [
        Problem(
            "models/acme.yaml", 3, 22, "unknown key 'min_fitt' in 'mql' — did you mean 'min_fit'?"
        )
    ]
    assert str(err) == (
        "the model has 1 problem:\n"
        "models/acme.yaml:3:22: unknown key 'min_fitt' in 'mql' — did you mean 'min_fit'?"
    )


def test_several_problems_in_one_file_are_all_listed_in_file_order() -> None:
    text = """\
    model: 2
    name: t
    fit:
      max: fifty
      rules:
        - name: Size
          when: {field: company.employees, between: [5000, 200]}
          points: 15
        - name: Senior
          when: {field: title, matches: "vp|(chief"}
          pionts: 15
          fast_track: true
    engagement:
      half_life_days: -1
      rules:
        - name: size
          event: Pricing Viewed
          points: -2
          cap: 10
    mql: {min_fit: 10}
    grades:
      fit: {A: 10, B: 25, C: 40}
      engagement: {1: 40, 2: 20, 3: 5}
    """
    got = problems(text)
    assert got == [
        f"{FILE}:1:8: 'model' must be 1 (the only format version), not the number 2",
        f"{FILE}:4:8: 'fit.max' must be a number, not the text 'fifty'",
        f"{FILE}:7:49: 'between' on 'company.employees' has low 5000 above high 200; "
        "write [200, 5000]",
        f"{FILE}:9:7: fit rule 'Senior' has no 'points'",
        f"{FILE}:10:37: 'matches' on 'title' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 3",
        f"{FILE}:11:7: unknown key 'pionts' in fit rule 'Senior' — did you mean 'points'?",
        f"{FILE}:12:7: 'fast_track' in fit rule 'Senior' belongs to engagement rules only; "
        "fit rules score traits, not events",
        f"{FILE}:14:19: 'engagement.half_life_days' must be greater than 0, not -1",
        f"{FILE}:16:13: rule name 'size' is already used on line 6; rule names must be unique",
        f"{FILE}:19:7: 'cap' of engagement rule 'size' needs positive points; "
        "a cap limits what a rule adds, and this rule gives -2",
        f"{FILE}:20:6: 'mql' has no 'threshold' (the score that makes an MQL)",
        f"{FILE}:22:8: 'grades.fit' thresholds must descend (A > B > C); got 10, 25, 40",
    ]


def test_load_model_names_the_path_it_read(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model: 1\nname: t\nmql: {threshold: 50}\nfit: {rules: [], mx: 5}\n")
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:4:18: unknown key 'mx' in 'fit' — did you mean 'max'?"
    ]


def test_load_model_missing_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:1:1: no such file; `leadscore init` writes a starter model"
    ]


def test_yaml_yes_no_words_stay_text_inside_conditions() -> None:
    # YAML 1.1 reads NO (Norway) as false; in a condition it means the country code.
    model = parse_model(
        textwrap.dedent(
            """\
            model: 1
            name: t
            fit:
              rules:
                - name: Nordics
                  when: {field: country, in: [NO, SE, "DK", yes]}
                  points: 5
                - name: Opted in
                  when: {field: opted_in, equals: true}
                  points: 1
            mql: {threshold: 50}
            """
        )
    )
    nordics, opted = model.fit_rules
    assert nordics.when == Leaf("country", ("country",), "in", ("no", "se", "dk", "yes"))
    assert opted.when == Leaf("opted_in", ("opted_in",), "equals", "true")


# --- valid models: the spec's example and every model the project ships ---------------------

SPEC_EXAMPLE = "spec:scoring-model.md"
DOCS = ROOT / "docs" / "model.md"
DOCS_EXAMPLE = "docs:model.md"
SHIPPED = sorted(
    p
    for pattern in ("examples/**/*.yaml", "examples/**/*.yml")
    for p in ROOT.glob(pattern)
    if p.is_file()
) + sorted(
    p
    for pattern in ("leadscore/templates/**/*.yaml", "leadscore/templates/**/*.yml")
    for p in ROOT.glob(pattern)
    if p.is_file()
)


def spec_example_text() -> str:
    if not SPEC.is_file():
        pytest.skip(f"the scoring-model spec is not beside the project ({SPEC})")
    blocks = re.findall(r"```yaml\n(.*?)```", SPEC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "the spec holds exactly one example model"
    return str(blocks[0])


def docs_block(marker: str) -> str:
    """The fenced block that follows ``<!-- marker -->`` in docs/model.md."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", text, flags=re.S)
    assert found, f"docs/model.md has no block marked {marker}"
    return found.group(1)


def test_spec_example_model_loads_as_written() -> None:
    model = parse_model(spec_example_text(), str(SPEC))
    assert model.name == "acme-b2b"
    assert [r.name for r in model.fit_rules] == [
        "Company size in ICP range",
        "Senior title",
        "Personal email",
    ]
    assert [(r.name, r.event, r.points, r.cap, r.fast_track) for r in model.engagement_rules] == [
        ("Pricing page", "page", 10.0, 30.0, False),
        ("Email opened", "Email Opened", 1.0, 5.0, False),
        ("Demo request", "Demo Requested", 45.0, None, True),
    ]
    assert (model.fit_max, model.engagement_max) == (50.0, 60.0)
    assert (model.half_life_days, model.window_days) == (30.0, 180.0)
    assert (model.threshold, model.min_fit) == (50.0, 20.0)
    assert model.grades is not None
    assert model.grades.fit == (40.0, 25.0, 10.0)
    assert model.grades.engagement == (40.0, 20.0, 5.0)


@pytest.mark.parametrize(
    "source",
    [SPEC_EXAMPLE, DOCS_EXAMPLE, *SHIPPED],
    ids=lambda s: s if isinstance(s, str) else str(s.relative_to(ROOT)),
)
def test_every_shipped_model_is_valid_and_scores(source: str | Path) -> None:
    if source == SPEC_EXAMPLE:
        model = parse_model(spec_example_text(), str(SPEC))
    elif source == DOCS_EXAMPLE:
        first = re.search(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
        assert first, "docs/model.md opens with an annotated model"
        model = parse_model(first.group(1), str(DOCS))
    else:
        model = load_model(source)
    assert model.name.strip()
    assert model.rules, "a shipped model has at least one rule"
    names = [r.name.lower() for r in model.rules]
    assert len(names) == len(set(names))
    # with no events at all, engagement is 0 and the score is the fit alone
    result = Scorer(model).score({}, [], datetime(2024, 6, 1, tzinfo=UTC))
    assert result.engagement == 0
    assert result.score == result.fit
    assert result.fast_track is False


# --- the documentation shows what the code does --------------------------------------------


def test_docs_validation_example_is_the_real_output() -> None:
    with pytest.raises(ModelError) as info:
        parse_model(docs_block("validation-example"), "leadscore.yaml")
    lines = [str(p) for p in info.value.problems]
    assert lines == docs_block("validation-example-output").splitlines()


def test_every_model_key_and_operator_is_documented() -> None:
    from leadscore.model import conditions, loader

    text = DOCS.read_text(encoding="utf-8")
    keys = {
        *loader.TOP_KEYS,
        *loader.FIT_KEYS,
        *loader.ENGAGEMENT_KEYS,
        *loader.FIT_RULE_KEYS,
        *loader.ENGAGEMENT_RULE_KEYS,
        *loader.MQL_KEYS,
        *conditions.COMBINATORS,
        *conditions.LEAF_KEYS,
    }
    undocumented = sorted(k for k in keys if f"`{k}" not in text)
    assert undocumented == []
