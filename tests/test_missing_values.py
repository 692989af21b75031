"""Placeholder values (``missing_values``): what a CRM writes for "not answered" is missing."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import duckdb
import pytest

from leadscore.engine import Event, Scorer
from leadscore.errors import ModelError
from leadscore.model import parse_model
from leadscore.sql import JsonTables, score_sql
from leadscore.sql.sqlite import connect_functions

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
MODEL = """
model: 1
name: crm
missing_values: [Select, N/A, "-", 0]
fit:
  rules:
    - {name: Answered, when: {field: specialization, exists: true}, points: 10}
    - {name: Not a student, when: {field: occupation, not_in: [Student]}, points: 5}
    - {name: Unanswered, when: {field: specialization, exists: false}, points: -3}
    - {name: Visits, when: {field: visits, gt: -1}, points: 1}
engagement:
  rules:
    - {name: Form, event: Form, when: {field: source, exists: true}, points: 7}
mql: {threshold: 10}
"""
LEADS = {
    "answered": {"specialization": "Finance", "occupation": "Working", "visits": 2},
    "select": {"specialization": "Select", "occupation": " select ", "visits": 0},
    "dash": {"specialization": "-", "occupation": "N/A", "visits": "0"},
    "empty": {},
}
EVENTS = [
    ("answered", "Form", {"source": "Google"}),
    ("select", "Form", {"source": "Select"}),
]
EXPECTED = {
    "answered": (10 + 5 + 1, 7.0),
    "select": (-3.0, 0.0),
    "dash": (-3.0, 0.0),
    "empty": (-3.0, 0.0),
}


def test_python_engine_reads_placeholders_as_missing():
    model = parse_model(MODEL)
    assert model.missing_values == ("select", "n/a", "-", "0")
    scorer = Scorer(model)
    for lead_id, traits in LEADS.items():
        evs = [Event(n, AS_OF, p) for i, n, p in EVENTS if i == lead_id]
        s = scorer.score(traits, evs, AS_OF)
        assert (s.fit, s.engagement) == EXPECTED[lead_id], lead_id


def test_without_the_list_placeholders_are_values():
    model = parse_model(MODEL.replace('missing_values: [Select, N/A, "-", 0]\n', ""))
    s = Scorer(model).score(LEADS["select"], [Event("Form", AS_OF, {"source": "Select"})], AS_OF)
    assert (s.fit, s.engagement) == (10 + 5 + 1, 7.0)


def _tables(con) -> None:
    con.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    con.executemany(
        "INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t in LEADS.items()]
    )


@pytest.mark.parametrize("dialect", ["duckdb", "sqlite"])
def test_sql_reads_placeholders_as_missing(dialect):
    model = parse_model(MODEL)
    if dialect == "duckdb":
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        _tables(con)
        con.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts TIMESTAMP, properties JSON)")
        source = JsonTables(ts="ts")
        ts: object = AS_OF.replace(tzinfo=None)
    else:
        con = sqlite3.connect(":memory:")
        connect_functions(con)
        _tables(con)
        con.execute(
            "CREATE TABLE events (lead_id TEXT, event TEXT, ts_us INTEGER, properties TEXT)"
        )
        source = JsonTables(ts_us="ts_us")
        ts = Event("x", AS_OF).ts_us
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)", [(i, n, ts, json.dumps(p)) for i, n, p in EVENTS]
    )
    cur = con.execute(score_sql(model, source, AS_OF, dialect, detail=True))
    cols = [d[0] for d in cur.description]
    got = {
        r["lead_id"]: (r["fit_raw"], r["engagement_raw"])
        for r in (dict(zip(cols, row, strict=True)) for row in cur.fetchall())
    }
    assert got == EXPECTED


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("missing_values: []", "'missing_values' must be a non-empty list"),
        ("missing_values: Select", "'missing_values' must be a non-empty list"),
        ("missing_values: [Select, ~]", "an item of 'missing_values' must be text or a number"),
        ("missing_values: [[a]]", "an item of 'missing_values' must be text or a number"),
        ("missing_vaules: [Select]", "did you mean 'missing_values'?"),
    ],
)
def test_invalid_lists_are_reported_with_their_place(text, needle):
    src = f"model: 1\nname: m\n{text}\nmql: {{threshold: 1}}\n"
    with pytest.raises(ModelError) as e:
        parse_model(src, "m.yaml")
    assert any(needle in str(p) and str(p).startswith("m.yaml:3:") for p in e.value.problems), [
        str(p) for p in e.value.problems
    ]


def test_batch_files_read_placeholders_as_missing(tmp_path):
    from leadscore.batch import run

    leads = tmp_path / "leads.csv"
    leads.write_text(
        "lead_id,specialization,occupation,visits\n"
        "answered,Finance,Working,2\nselect,Select, select ,0\ndash,-,N/A,0\nempty,,,\n"
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({"lead_id": i, "event": n, "timestamp": "2026-06-01", "properties": p})
            + "\n"
            for i, n, p in EVENTS
        )
    )
    batch = run(parse_model(MODEL), leads, events, AS_OF)
    got = {r["lead_id"]: (r["fit"], r["engagement"]) for r in map(json.loads, batch.jsonl_lines())}
    assert got == EXPECTED
