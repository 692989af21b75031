"""Warehouse SQL keeps decaying: ``as_of`` is the engine's current time, a parameter or fixed.

A query rendered with ``AsOf.now()`` run inside a transaction gives exactly what the Python engine
gives at that transaction's start (DuckDB and PostgreSQL fix CURRENT_TIMESTAMP per transaction);
a query with a parameter gives, bound to any instant, what a fixed query at that instant gives.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import duckdb
import psycopg
import pytest

from leadscore.engine import Event
from leadscore.model import parse_model
from leadscore.sql import AsOf, JsonTables, score_sql
from leadscore.sql.sqlite import connect_functions

from .parity_strategies import AS_OF
from .test_cli import ls
from .test_parity import assert_same, load_duckdb, python_scores, sql_rows

MODEL = """
model: 1
name: decaying
fit:
  rules:
    - {name: Senior, when: {field: title, contains: vp}, points: 20}
engagement:
  half_life_days: 7
  window_days: 30
  rules:
    - {name: Pricing page, event: page, when: {field: path, equals: /pricing}, points: 10, cap: 40}
    - {name: Demo, event: Demo Requested, points: 30, fast_track: true}
mql: {threshold: 45}
grades:
  fit: {A: 40, B: 20, C: 10}
  engagement: {1: 40, 2: 20, 3: 5}
"""


@pytest.fixture(scope="module")
def model():
    return parse_model(MODEL, "decaying.yaml")


def dataset(at: datetime):
    """Leads whose events sit at sub-second ages around ``at``, some after it."""
    ages = [
        timedelta(seconds=-3600),
        timedelta(microseconds=250_000),
        timedelta(hours=5, microseconds=1),
        timedelta(days=3, microseconds=999_999),
        timedelta(days=29, hours=23),
        timedelta(days=31),
    ]
    data = []
    for i in range(6):
        evs = [("page", at - ages[(i + k) % len(ages)], {"path": "/pricing"}) for k in range(i + 1)]
        if i % 3 == 2:
            evs.append(("Demo Requested", at - ages[i], {}))
        data.append((f"L{i}", {"title": "VP Sales" if i % 2 else "Engineer"}, evs))
    return data


def test_duckdb_now_is_the_transaction_time(model):
    data = dataset(datetime.now(UTC))
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    load_duckdb(con, data)
    sql = score_sql(model, JsonTables(ts="ts"), AsOf.now(), "duckdb", detail=True)
    assert "CURRENT_TIMESTAMP" in sql
    con.execute("BEGIN")
    (now,) = con.execute("SELECT current_timestamp").fetchone()
    cur = con.execute(sql)
    got = sql_rows(cur.fetchall(), [d[0] for d in cur.description])
    con.execute("COMMIT")
    assert_same(python_scores(model, data, now), got, "duckdb, as_of now")


def test_duckdb_parameter_binds_any_instant(model):
    data = dataset(AS_OF)
    con = duckdb.connect()
    load_duckdb(con, data)
    sql = score_sql(model, JsonTables(ts="ts"), AsOf.parameter(), "duckdb", detail=True)
    for at in (AS_OF, AS_OF + timedelta(days=2, microseconds=3), AS_OF - timedelta(days=40)):
        cur = con.execute(sql, {"as_of": at})
        got = sql_rows(cur.fetchall(), [d[0] for d in cur.description])
        assert_same(python_scores(model, data, at), got, f"duckdb, as_of {at}")


def test_postgres_now_and_parameter(model, pg_url):
    data = dataset(datetime.now(UTC))
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
        with conn.transaction():
            (now,) = conn.execute("SELECT CURRENT_TIMESTAMP").fetchone()
            cur = conn.execute(score_sql(model, source, AsOf.now(), "postgres", detail=True))
            got = sql_rows(cur.fetchall(), [d.name for d in cur.description])
        assert_same(python_scores(model, data, now), got, "postgres, as_of now")
        sql = score_sql(model, source, AsOf.parameter(), "postgres", detail=True)
        at = now + timedelta(days=1, microseconds=17)
        cur = conn.execute(sql, {"as_of": at})
        got = sql_rows(cur.fetchall(), [d.name for d in cur.description])
        assert_same(python_scores(model, data, at), got, "postgres, as_of param")


def test_sqlite_parameter_and_now(model):
    data = dataset(AS_OF)
    con = sqlite3.connect(":memory:")
    connect_functions(con)
    con.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    con.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts_us INTEGER, properties TEXT)")
    con.executemany("INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t, _ in data])
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        [(i, n, Event(n, ts).ts_us, json.dumps(p)) for i, _, evs in data for n, ts, p in evs],
    )
    source = JsonTables(ts_us="ts_us")
    sql = score_sql(model, source, AsOf.parameter(), "sqlite", detail=True)
    at = AS_OF + timedelta(hours=3, microseconds=250_001)
    cur = con.execute(sql, {"as_of": at.replace(tzinfo=None).isoformat(sep=" ")})
    got = sql_rows(cur.fetchall(), [d[0] for d in cur.description])
    assert_same(python_scores(model, data, at), got, "sqlite, as_of param")
    # now: SQLite's clock has milliseconds and moves during the statement, so compare with the
    # Python engine at the time just before, to within the decay of a few seconds
    data = dataset(datetime.now(UTC))
    con.execute("DELETE FROM events")
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        [(i, n, Event(n, ts).ts_us, json.dumps(p)) for i, _, evs in data for n, ts, p in evs],
    )
    before = datetime.now(UTC)
    cur = con.execute(score_sql(model, source, AsOf.now(), "sqlite", detail=True))
    got = sql_rows(cur.fetchall(), [d[0] for d in cur.description])
    expected = python_scores(model, data, before)
    assert got.keys() == expected.keys()
    for lead_id, e in expected.items():
        g = got[lead_id]
        assert abs(g["score"] - e["score"]) < 0.01, lead_id
        assert (g["mql"], [r for r, _ in g["reasons"]]) == (e["mql"], [r for r, _ in e["reasons"]])


def test_cli_sql_as_of(tmp_path):
    ls("init", cwd=tmp_path)
    default = ls("sql", "--dialect", "snowflake", cwd=tmp_path).stdout
    assert "CURRENT_TIMESTAMP()" in default and "current time when it runs" in default
    assert "CAST('20" not in default
    param = ls("sql", "--dialect", "bigquery", "--as-of", "param", cwd=tmp_path).stdout
    assert "@as_of" in param and "CURRENT_TIMESTAMP" not in param
    fixed = ls("sql", "--dialect", "spark", "--as-of", "2026-06-01", cwd=tmp_path).stdout
    assert "TIMESTAMP_MICROS(1780272000000000)" in fixed and "CURRENT_TIMESTAMP" not in fixed
    bare = ls("sql", "--no-semicolon", cwd=tmp_path).stdout
    assert not bare.rstrip().endswith(";")
    bad = ls("sql", "--as-of", "tomorrow", cwd=tmp_path, ok=False)
    assert bad.returncode == 1
    assert "--as-of 'tomorrow' is not now, param or a date" in bad.stderr
