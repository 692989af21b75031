"""Names and values reach every engine unchanged: quotes, backslashes, %, newlines, non-ASCII.

The model's rule names, event names and compared values are written into the query as string
literals; each dialect quotes them its own way (``''`` or ``\\'``; a backslash is an escape in
Spark, BigQuery and Snowflake). The query runs on DuckDB, SQLite and PostgreSQL against the Python
engine; the Snowflake and BigQuery renderings are parsed back and must hold the same strings.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import psycopg
import pytest
import sqlglot
import yaml
from sqlglot import exp

from leadscore.engine import Event
from leadscore.model import parse_model
from leadscore.sql import DIALECTS, AsOf, JsonTables, compile_score, score_sql
from leadscore.sql.sqlite import connect_functions

from .parity_strategies import AS_OF
from .test_parity import assert_same, load_duckdb, python_scores, sql_rows

NASTY = [
    "Won't buy",
    'Said "maybe"',
    "C:\\new",
    "C:\\\\server\\share",
    "50% off",
    "100%% sure",
    "two\nlines",
    "tab\tand\rreturn",
    "Zürich — 東京 🚀",
    "back\\'slash quote",
    "it''s doubled",
    "$1 and ${var} and :param and @at and ?",
    "--not a comment",
    "/* nor this */",
]


def nasty_model() -> str:
    fit = []
    for i, s in enumerate(NASTY):
        fit.append({"name": s, "when": {"field": "title", "equals": s}, "points": 10 + i})
        fit.append(
            {"name": f"{s} (contains)", "when": {"field": "note", "contains": s}, "points": 1}
        )
        fit.append(
            {"name": f"{s} (starts)", "when": {"field": "note", "starts_with": s}, "points": 2}
        )
    eng = [
        {
            "name": f"event {s}",
            "event": s,
            "points": 3 + i,
            "when": {"field": "tag", "in": [s, "x"]},
        }
        for i, s in enumerate(NASTY)
    ]
    doc = {
        "model": 1,
        "name": "quoting",
        "fit": {"rules": fit},
        "engagement": {"rules": eng, "half_life_days": 30},
        "mql": {"threshold": 15},
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def nasty_data():
    data = []
    for i, s in enumerate(NASTY):
        traits = {"title": s.upper() if i % 2 else s, "note": f"{s} and more"}
        evs = [
            (s, AS_OF - timedelta(days=i, microseconds=i * 7), {"tag": s}),
            (s, AS_OF - timedelta(days=2 * i), {"tag": "other"}),
        ]
        data.append((f"L'{i}\\", traits, evs))
    data.append(("L-none", {"title": "nobody"}, []))
    return data


@pytest.fixture(scope="module")
def model():
    return parse_model(nasty_model(), "quoting.yaml")


def test_duckdb_keeps_every_string(model):
    import duckdb

    data = nasty_data()
    con = duckdb.connect()
    load_duckdb(con, data)
    cur = con.execute(score_sql(model, JsonTables(ts="ts"), AS_OF, "duckdb", detail=True))
    got = sql_rows(cur.fetchall(), [d[0] for d in cur.description])
    assert_same(python_scores(model, data), got, "duckdb")
    assert {r for lead in got.values() for r, _ in lead["reasons"]} >= set(NASTY)


def test_sqlite_keeps_every_string(model):
    data = nasty_data()
    con = sqlite3.connect(":memory:")
    connect_functions(con)
    con.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    con.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts_us INTEGER, properties TEXT)")
    con.executemany("INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t, _ in data])
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        [(i, n, Event(n, ts).ts_us, json.dumps(p)) for i, _, evs in data for n, ts, p in evs],
    )
    cur = con.execute(score_sql(model, JsonTables(ts_us="ts_us"), AS_OF, "sqlite", detail=True))
    got = sql_rows(cur.fetchall(), [d[0] for d in cur.description])
    assert_same(python_scores(model, data), got, "sqlite")
    assert got["L-none"]["reasons"] == []


def test_postgres_keeps_every_string(model, pg_url):
    data = nasty_data()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE leads (lead_id text primary key, traits jsonb not null)")
        conn.execute(
            "CREATE TABLE events (lead_id text, event text, ts timestamptz, properties jsonb)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO leads VALUES (%s, %s)", [(i, json.dumps(t)) for i, t, _ in data]
            )
            cur.executemany(
                "INSERT INTO events VALUES (%s, %s, %s, %s)",
                [(i, n, ts, json.dumps(p)) for i, _, evs in data for n, ts, p in evs],
            )
        source = JsonTables(ts="ts", ts_aware=True, jsonb=True)
        cur = conn.execute(score_sql(model, source, AS_OF, "postgres", detail=True))
        got = sql_rows(cur.fetchall(), [d.name for d in cur.description])
        assert_same(python_scores(model, data), got, "postgres")
        # with a parameter (psycopg's %(as_of)s), a % in a name or value is still itself
        query = score_sql(model, source, AsOf.parameter(), "postgres", detail=True)
        cur = conn.execute(query, {"as_of": AS_OF})
        got = sql_rows(cur.fetchall(), [d.name for d in cur.description])
    assert_same(python_scores(model, data), got, "postgres, as_of param")


def _strings(tree: exp.Expr) -> set[str]:
    return {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_rendered_sql_parses_back_to_the_same_strings(model, dialect):
    """What the warehouse reads: the rendered text, parsed by that dialect, holds every name and
    value exactly, and nothing the model did not say (no string split in two)."""
    tree = compile_score(model, JsonTables(ts="ts"), AS_OF, dialect)
    text = score_sql(model, JsonTables(ts="ts"), AS_OF, dialect)
    if dialect == "spark":  # Spark would replace ${var} in a string with a setting
        assert "${" not in text
    back = sqlglot.parse_one(text, read=dialect)
    names = {r.name for r in model.rules}
    values = {s.strip().lower() for s in NASTY}
    assert names <= _strings(back)
    assert values <= _strings(back)
    # no string the query did not hold (JSON paths may parse back as paths, not strings;
    # Snowflake spells a struct's field names as strings)
    assert _strings(back) - _strings(tree) <= {"rule", "points"}
    assert not list(back.find_all(exp.Concat)), "a string literal was split"


NEAR_ZERO = """
model: 1
name: near zero
fit:
  rules:
    - {name: a, when: {field: title, exists: true}, points: 0.3}
    - {name: b, when: {field: title, exists: true}, points: -0.1}
    - {name: c, when: {field: title, exists: true}, points: -0.2}
mql: {threshold: 10}
"""


def test_a_tiny_negative_sum_is_written_as_zero_not_minus_zero(pg_url):
    """0.3 - 0.1 - 0.2 is -2.8e-17 in doubles: every engine writes 0.0, never -0.0."""
    import math

    import duckdb

    model = parse_model(NEAR_ZERO, "near.yaml")
    data = [("L1", {"title": "x"}, [])]
    assert python_scores(model, data)["L1"]["fit"] < 0
    con = duckdb.connect()
    load_duckdb(con, data)
    (fit,) = con.execute(
        f"SELECT fit FROM ({score_sql(model, JsonTables(ts='ts'), AS_OF, 'duckdb')})"
    ).fetchone()
    lite = sqlite3.connect(":memory:")
    connect_functions(lite)
    lite.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    lite.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts_us INTEGER, properties TEXT)")
    lite.execute("INSERT INTO leads VALUES ('L1', ?)", [json.dumps({"title": "x"})])
    (lite_fit,) = lite.execute(
        f"SELECT fit FROM ({score_sql(model, JsonTables(ts_us='ts_us'), AS_OF, 'sqlite')})"
    ).fetchone()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE leads (lead_id text, traits json)")
        conn.execute(
            "CREATE TABLE events (lead_id text, event text, ts timestamp, properties json)"
        )
        conn.execute("""INSERT INTO leads VALUES ('L1', '{"title": "x"}')""")
        (pg_fit,) = conn.execute(
            f"SELECT fit FROM ({score_sql(model, JsonTables(ts='ts'), AS_OF, 'postgres')}) q"
        ).fetchone()
    for engine, value in (("duckdb", fit), ("sqlite", lite_fit), ("postgres", pg_fit)):
        assert value == 0 and math.copysign(1.0, value) == 1.0, engine
