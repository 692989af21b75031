"""The range of numbers (below 1e100 in magnitude; 0 or at least 1e-99; text of at most 200
characters) is the same for the Python engine that scores ingest and the SQL engine that
re-scores every lead at an activation, on each database, whatever JSON spelling the database
gives a stored number."""

from __future__ import annotations

from typing import Any

from leadscore.service.common import loads
from tests.service_helpers import Api, identify

_MODEL = """\
model: 1
name: {name}
fit:
  rules:
    - name: A number
      when: {{field: x, gte: -10}}
      points: 10
    - name: Over 0.3
      when: {{field: x, gt: 0.3}}
      points: 1
engagement:
  rules:
    - name: Any page
      event: page
      points: 1
mql:
  threshold: 1000
"""

_VALUES: list[Any] = [
    1e-99,
    "1e-99",
    5e-100,
    "5e-100",
    1.5e-99,
    # a double SQLite's 15-digit text of a REAL does not give back (1.0e+100, out of the
    # range; 0.3, not over 0.3): its SQL reads the number's JSON spelling instead
    9.999999999999999e99,
    9.99999999999999e99,
    0.30000000000000004,
    0.3,
    "9.999999999999999e99",
    1e100,
    "1e100",
    1e99,
    -0.0,
    0,
    " 5 ",
    "0" * 199 + "5",
    "0" * 200 + "5",
    "0." + "0" * 98 + "1",
    "0." + "0" * 99 + "1",
    10**99,
    10**100,
    1.7976931348623157e308,
    123456789.123456789e-95,
]


def test_the_engines_read_the_same_numbers(api: Api) -> None:
    svc = api.service
    svc.add_model(_MODEL.format(name="one"), "test")
    leads = {f"n{i}": v for i, v in enumerate(_VALUES)}
    api.ok(*(identify(lead, {"x": v}) for lead, v in leads.items()))
    by_python = {lead: loads(api.row(lead).rule_sums)["h"] for lead in leads}
    version = svc.add_model(_MODEL.format(name="two"), "test", activate=False)["version"]
    svc.activate(version, "test")
    by_sql = {lead: loads(api.row(lead).rule_sums)["h"] for lead in leads}
    differ = {leads[x]: (by_python[x], by_sql[x]) for x in leads if by_python[x] != by_sql[x]}
    assert differ == {}
