"""SQLite's SQL reads a stored JSON number as the Python engine does, to the last bit: a double
that needs 16 or 17 significant digits (0.30000000000000004, 9.999999999999999e99) or an
integer past 64 bits. SQLite's own text of a REAL keeps 15 digits, so its rendering takes the
number's JSON spelling instead (``json_extract`` of two paths, whose JSON array spells the
number as stored, as ``->`` of SQLite 3.38 does), or 17 digits where SQLite reads even that
spelling a bit off."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import orjson
import pytest

from leadscore.engine import Scorer
from leadscore.model import parse_model
from leadscore.sql import JsonTables, score_sql
from leadscore.sql.dialects import adapter
from leadscore.sql.sqlite import connect_functions

from .parity_strategies import AS_OF

MODEL = """\
model: 1
name: numbers
fit:
  rules:
    - {name: Over 0.3, when: {field: x, gt: 0.3}, points: 1}
    - {name: A number, when: {field: x, gte: -10}, points: 2}
    - {name: The big one, when: {field: x, equals: 12345678901234567890123}, points: 4}
    - {name: Spelt, when: {field: x, equals: "0.30000000000000004"}, points: 8}
    - {name: Nested, when: {field: company.size, lt: 1.0000000000000002}, points: 16}
    - {name: Off by a bit, when: {field: x, equals: -6.793921531704187}, points: 32}
    - {name: Large, when: {field: x, gte: 4.63741414315206e+22}, points: 64}
    - {name: Text of an integer, when: {field: x, equals: "9223372036854775807"}, points: 128}
engagement:
  rules:
    - {name: Any page, event: page, points: 1}
mql:
  threshold: 1000
"""

#: numbers whose double SQLite's 15-digit text of a REAL does not give back, and some it does
VALUES: list[Any] = [
    0.30000000000000004,
    0.3,
    9.999999999999999e99,  # below 1e100: a number
    9.99999999999999e99,
    1e100,  # not a number (out of range)
    12345678901234567890123,  # past 64 bits: a REAL in SQLite, its text 15 digits
    2**63 - 1,
    -(2**63),
    1.0000000000000002,
    -0.0,
    1.5e-05,
    123456789.123456789e-95,
    0.1 + 0.2,
    1 / 3,
    2.2250738585072014e-308,
    # 16 digits that SQLite's own text-to-REAL reads a bit off (its JSON parser reads them
    # right): the rendering falls back to 17 digits for them
    -6.793921531704187,
    4.63741414315206e22,
    -2.485312339039502e-26,
]


def _python(model_text: str, traits: dict[str, dict[str, Any]]) -> dict[str, float]:
    scorer = Scorer(parse_model(model_text, "numbers.yaml"))
    # the service parses stored traits with orjson, as ingest and reads do
    return {
        lead: scorer.score(orjson.loads(_dumps(t)), [], AS_OF).fit for lead, t in traits.items()
    }


def _sqlite(model_text: str, traits: dict[str, dict[str, Any]], dump: Any) -> dict[str, float]:
    con = sqlite3.connect(":memory:")
    connect_functions(con)
    con.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    con.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts_us INTEGER, properties TEXT)")
    con.executemany("INSERT INTO leads VALUES (?, ?)", [(k, dump(t)) for k, t in traits.items()])
    model = parse_model(model_text, "numbers.yaml")
    cur = con.execute(score_sql(model, JsonTables(ts_us="ts_us"), AS_OF, "sqlite", detail=True))
    cols = [d[0] for d in cur.description]
    return {r["lead_id"]: r["fit_raw"] for r in (dict(zip(cols, row, strict=True)) for row in cur)}


def _traits() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, v in enumerate(VALUES):
        out[f"x{i}"] = {"x": v}
        out[f"n{i}"] = {"company": {"size": v}}
    return out


def _dumps(v: Any) -> str:
    """The service's JSON (orjson; Python's json for an integer past 64 bits)."""
    try:
        return orjson.dumps(v).decode()
    except TypeError:
        return json.dumps(v)


@pytest.fixture(params=["arrows", "json_extract"])
def rendering(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both spellings: ``->`` (SQLite 3.38 and later) and the one every version has (used)."""
    monkeypatch.setattr(adapter("sqlite"), "arrows", request.param == "arrows")
    return str(request.param)


@pytest.mark.parametrize("dump", [_dumps, json.dumps], ids=["orjson", "json"])
def test_sqlite_reads_every_stored_number_as_the_python_engine(rendering: str, dump: Any) -> None:
    traits = _traits()
    want = _python(MODEL, traits)
    got = _sqlite(MODEL, traits, dump)
    differ = {(repr(traits[k]), rendering): (want[k], got[k]) for k in traits if want[k] != got[k]}
    assert differ == {}
    # what the rules decide, spelled out for the values the 15-digit text got wrong
    assert want["x0"] == 1 + 2 + 8  # above 0.3, a number, spelt as the condition
    assert want["x2"] == 1 + 2 + 64  # a number: below 1e100
    assert want["x5"] == 1 + 2 + 4
    assert want["x15"] == 2 + 32 and want["x16"] == 1 + 2 + 64
    assert want["x6"] == 1 + 2 + 128
    assert want["n8"] == 0 and want["n0"] == 16  # 1.0000000000000002 is not below itself


def test_the_rendering_takes_the_json_spelling_only_of_numbers() -> None:
    """Text, booleans and nested values keep their text form."""
    traits = {
        "t": {"x": "0.30000000000000004"},
        "b": {"x": True},
        "o": {"x": {"y": 1}},
        "a": {"x": [0.30000000000000004]},
    }
    assert _python(MODEL, traits) == _sqlite(MODEL, traits, _dumps)


@pytest.mark.parametrize(
    ("literal", "written"),
    [
        ("-6.793921531704187", "-6.7939215317041866"),  # SQLite reads it ...874 as it is
        ("0.1", "0.10000000000000001"),
        ("2.0", "2.0"),  # still a REAL: 2 would make SQLite's division an integer one
        ("2592000000000.0", "2592000000000.0"),
        ("1e+20", "1e+20"),
        ("250", "250"),  # an integer stays as it is
    ],
)
def test_sqlite_decimals_are_written_with_17_digits(literal: str, written: str) -> None:
    from sqlglot import exp

    assert adapter("sqlite").render(exp.Literal.number(literal)) == written
    con = sqlite3.connect(":memory:")
    assert con.execute(f"SELECT {written}").fetchone()[0] == float(literal)


def test_the_sqlite_query_runs_on_sqlite_before_3_38() -> None:
    """``leadscore sql --dialect sqlite`` prints a query for someone else's SQLite, whatever
    version this one is: it reads numbers exactly without ``->``, which SQLite has only from
    3.38 (and a query with it is a syntax error before), and it reads them as the Python
    engine does."""
    model = parse_model(MODEL, "numbers.yaml")
    text = score_sql(model, JsonTables(ts_us="ts_us"), AS_OF, "sqlite", detail=True)
    assert "->" not in text
    traits = _traits()
    assert _sqlite(MODEL, traits, _dumps) == _python(MODEL, traits)
