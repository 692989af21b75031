"""A model file reads the same with libyaml (PyYAML's C parser, used when installed) as with the
Python parser: the same model, or the same problems at the same places."""

from __future__ import annotations

import pytest
import yaml

from leadscore.errors import ModelError
from leadscore.model import parse_model

BODY = """model: 1
name: t
fit:
  rules:
    - name: Country
      when: {field: country, in: [NO, SE, yes, on]}
      points: 5
    - name: Zip
      when: {field: zip, equals: 02134}
      points: 1
mql: {threshold: 5}
"""

TEXTS = [
    BODY,
    BODY.replace("name: t", "name: Zürich 😀"),
    BODY.replace("name: t", "name:\tt"),  # a tab after the colon
    BODY.replace("name: t", "name: t\t"),  # a tab after the value, unseen in an editor
    BODY.replace("[NO, SE,", "[NO,\tSE,"),  # a tab in a flow sequence
    BODY.replace("name: t", "name: t\nname: u"),  # a duplicate key
    BODY.replace("in: [NO", "in: &c [NO").replace("02134}", "02134}\n      also: *c"),
    "\ufeff" + BODY,
]


def _outcome(text: str) -> object:
    try:
        return repr(parse_model(text, "m.yaml"))
    except ModelError as e:
        return [str(p) for p in e.problems]


@pytest.mark.parametrize("text", TEXTS)
def test_a_model_reads_the_same_with_and_without_libyaml(text, monkeypatch):
    assert getattr(yaml, "CSafeLoader", None) is not None  # the fast path is under test
    with_c = _outcome(text)
    monkeypatch.delattr(yaml, "CSafeLoader")
    assert _outcome(text) == with_c


def test_a_tab_after_a_colon_is_still_a_problem_at_its_place():
    got = _outcome(BODY.replace("name: t", "name:\tt"))
    assert isinstance(got, list) and got[0].startswith("m.yaml:2:6: this is not valid YAML")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "mql: {threshold: 5}",
            "mql:\n  <<: {threshold: 5}",
            "m.yaml:12:3: unknown key '<<' in 'mql'",
        ),
        ("points: 5", "points: !foo 5", "m.yaml:7:15: 'points' of fit rule 'Country' must be"),
    ],
)
def test_a_merge_key_or_an_unknown_tag_is_a_problem_at_its_place(old, new, problem):
    got = _outcome(BODY.replace(old, new))
    assert isinstance(got, list) and any(p.startswith(problem) for p in got), got
