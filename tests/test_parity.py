"""The Python engine, DuckDB, PostgreSQL, SQLite and Spark give the same scores on generated
models and data.

Unrounded scores agree to 1e-6 and every decision (mql, fast track, grade, which reasons) exactly,
including text with mixed case and spaces, numbers stored as text, "n/a", missing fields, events
after as_of, window edges to the microsecond and caps reached after decay.
"""

from __future__ import annotations

import json
import math
import os
from datetime import timedelta
from typing import Any

import duckdb
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings

from leadscore.engine import Event, Scorer
from leadscore.model import parse_model
from leadscore.sql import JsonTables, score_sql

from .parity_strategies import AS_OF, datasets, models

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def python_scores(model, data, as_of=AS_OF) -> dict[str, Any]:
    scorer = Scorer(model)
    out = {}
    for lead_id, traits, evs in data:
        s = scorer.score(traits, [Event(n, ts, p) for n, ts, p in evs], as_of)
        out[lead_id] = {
            "fit": s.fit,
            "engagement": s.engagement,
            "score": s.score,
            "grade": s.grade,
            "mql": s.mql,
            "fast_track": s.fast_track,
            "reasons": [(r.rule, r.points) for r in s.reasons],
        }
    return out


def sql_rows(rows, columns) -> dict[str, Any]:
    out = {}
    for row in rows:
        r = row if columns is None else dict(zip(columns, row, strict=True))
        reasons = r["reasons"]
        assert reasons is not None, f"lead {r['lead_id']}: reasons is NULL, not a list"
        if isinstance(reasons, str):
            reasons = json.loads(reasons)
        out[r["lead_id"]] = {
            "fit": r["fit_raw"],
            "engagement": r["engagement_raw"],
            "score": r["score_raw"],
            "grade": r["grade"],
            "mql": bool(r["mql"]),
            "fast_track": bool(r["fast_track"]),
            "reasons": [(x["rule"], float(x["points"])) for x in reasons],
            "rounded": (r["fit"], r["engagement"], r["score"]),
        }
    return out


def assert_same(expected: dict[str, Any], got: dict[str, Any], engine: str) -> None:
    assert set(got) == set(expected), engine
    for lead_id, e in expected.items():
        g = got[lead_id]
        where = f"{engine}, lead {lead_id}"
        for k in ("fit", "engagement", "score"):
            assert math.isclose(g[k], e[k], rel_tol=1e-9, abs_tol=1e-6), (where, k, g[k], e[k])
        assert (g["grade"], g["mql"], g["fast_track"]) == (e["grade"], e["mql"], e["fast_track"]), (
            where
        )
        assert [r for r, _ in g["reasons"]] == _tie_tolerant(e["reasons"], g["reasons"]), where
        # relative to the size too: a double holds no cents of 3e99 (a trait rule's points)
        for (_, gp), (_, ep) in zip(sorted(g["reasons"]), sorted(e["reasons"]), strict=True):
            assert math.isclose(gp, round(ep, 2), rel_tol=1e-9, abs_tol=0.0100001), where
        for value, k in zip(g["rounded"], ("fit", "engagement", "score"), strict=True):
            assert math.isclose(float(value), e[k], rel_tol=1e-9, abs_tol=0.005 + 1e-6), (where, k)


def _tie_tolerant(expected, got) -> list[str]:
    """Expected rule order, except that rules whose points differ by < 1e-9 may swap."""
    names = [r for r, _ in expected]
    got_names = [r for r, _ in got]
    if names == got_names or sorted(names) != sorted(got_names):
        return names
    pts = dict(expected)
    for a, b in zip(names, got_names, strict=True):
        if a != b and abs(abs(pts[a]) - abs(pts[b])) > 1e-9:
            return names
    return got_names


def load_duckdb(con, data) -> None:
    con.execute("DROP TABLE IF EXISTS leads; DROP TABLE IF EXISTS events")
    con.execute("CREATE TABLE leads (lead_id VARCHAR, traits JSON)")
    con.execute(
        "CREATE TABLE events (lead_id VARCHAR, event VARCHAR, ts TIMESTAMP, properties JSON)"
    )
    con.executemany("INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t, _ in data])
    ev = [(i, n, ts.replace(tzinfo=None), json.dumps(p)) for i, _, evs in data for n, ts, p in evs]
    if ev:
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", ev)


@pytest.fixture(scope="module")
def pg_conn(postgres_server):
    url = postgres_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE leads (lead_id text primary key, traits jsonb not null)")
        conn.execute(
            "CREATE TABLE events (lead_id text, event text, ts timestamptz, properties jsonb)"
        )
        conn.execute(
            "CREATE TABLE events_us (lead_id text, event text, ts_us bigint, properties jsonb)"
        )
        yield conn


def load_postgres(conn, data) -> None:
    conn.execute("TRUNCATE leads, events, events_us")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO leads VALUES (%s, %s)", [(i, json.dumps(t)) for i, t, _ in data]
        )
        ev = [(i, n, ts, json.dumps(p)) for i, _, evs in data for n, ts, p in evs]
        if ev:
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s)", ev)
            cur.executemany(
                "INSERT INTO events_us VALUES (%s, %s, %s, %s)",
                [(i, n, Event(n, ts).ts_us, p) for i, n, ts, p in ev],
            )


#: a dated trait and an event thousands of half-lives old: decayed to 0, where PostgreSQL's
#: power() raised "value out of range: underflow"
_UNDERFLOW_MODEL = """\
model: 1
name: underflow
engagement:
  half_life_days: 0.5
  rules:
    - {name: Visits, trait: visits, at: last_seen, points: 0.5}
    - {name: Pages, event: page, points: 0.5}
mql: {threshold: 10}
"""
_UNDERFLOW_DATA = [
    (
        "old",
        {"visits": 3, "last_seen": "1999-12-31T23:59:59.5"},
        [("page", AS_OF - timedelta(days=2000), {}), ("page", AS_OF - timedelta(days=1), {})],
    )
]

#: trait values at the ends of a double, as numbers and as text: 2 points a unit of 1e308 was
#: infinity (NaN with a penalty of infinity), PostgreSQL refused the query ("value out of range")
#: and a JSON number of 1e100 was a number to Python and PostgreSQL but not to DuckDB
_OVERFLOW_MODEL = """\
model: 1
name: overflow
fit:
  rules:
    - {name: Many visits, when: {field: visits, gt: 100}, points: 5}
engagement:
  rules:
    - {name: Visits, trait: visits, points: 2}
    - {name: Refunds, trait: refunds, points: -3}
mql: {threshold: 20}
"""
_OVERFLOW_DATA = [
    (str(i), {"visits": v, "refunds": r}, [])
    for i, (v, r) in enumerate(
        [
            (1e308, 1.7e308),
            (1e100, 9.5e99),
            ("1" + "0" * 307, None),
            ("9" * 310, "1" + "0" * 99),
            ("99e99", "9.5e99"),
            (1e-100, 5e-324),
            ("0." + "0" * 98 + "1", 1e-99),
            ("0" * 190 + "7", "0" * 201 + "7"),
            (10**120, -(10**120)),
        ]
    )
]


@SETTINGS
@given(model_text=models(), data=datasets())
@example(model_text=_UNDERFLOW_MODEL, data=_UNDERFLOW_DATA)
@example(model_text=_OVERFLOW_MODEL, data=_OVERFLOW_DATA)
def test_python_duckdb_and_postgres_agree(pg_conn, model_text, data):
    model = parse_model(model_text, "generated.yaml")
    expected = python_scores(model, data)

    con = duckdb.connect()
    load_duckdb(con, data)
    cur = con.execute(score_sql(model, JsonTables(ts="ts"), AS_OF, "duckdb", detail=True))
    assert_same(expected, sql_rows(cur.fetchall(), [d[0] for d in cur.description]), "duckdb")

    load_postgres(pg_conn, data)
    for source in (
        JsonTables(ts="ts", ts_aware=True, jsonb=True),
        JsonTables(events="events_us", ts_us="ts_us", jsonb=True),
    ):
        cur = pg_conn.execute(score_sql(model, source, AS_OF, "postgres", detail=True))
        got = sql_rows(cur.fetchall(), [d.name for d in cur.description])
        assert_same(expected, got, f"postgres ({source.ts or source.ts_us})")


@SETTINGS
@given(model_text=models(), data=datasets())
@example(model_text=_OVERFLOW_MODEL, data=_OVERFLOW_DATA)
def test_sqlite_agrees(model_text, data):
    import sqlite3

    from leadscore.sql.sqlite import connect_functions

    model = parse_model(model_text, "generated.yaml")
    expected = python_scores(model, data)
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
    assert_same(expected, sql_rows(cur.fetchall(), [d[0] for d in cur.description]), "sqlite")


SPARK_SETTINGS = settings(
    max_examples=int(os.environ.get("LEADSCORE_SPARK_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def spark():
    """A local Spark session in a time zone that is not UTC: no instant may move with it."""
    from leadscore.sql.spark import session

    s = session()
    s.conf.set("spark.sql.session.timeZone", "America/New_York")
    return s


def load_spark(spark, data) -> None:
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    leads = StructType([StructField("lead_id", StringType()), StructField("traits", StringType())])
    events = StructType(
        [
            StructField("lead_id", StringType()),
            StructField("event", StringType()),
            StructField("ts", TimestampType()),
            StructField("properties", StringType()),
        ]
    )
    spark.createDataFrame([(i, json.dumps(t)) for i, t, _ in data], leads).createOrReplaceTempView(
        "leads"
    )
    ev = [(i, n, ts, json.dumps(p)) for i, _, evs in data for n, ts, p in evs]
    spark.createDataFrame(ev, events).createOrReplaceTempView("events")


@SPARK_SETTINGS
@given(model_text=models(), data=datasets())
@example(model_text=_OVERFLOW_MODEL, data=_OVERFLOW_DATA)
def test_spark_agrees(spark, model_text, data):
    """Sub-second event times, quotes in rule names, leads without reasons, a session time zone
    that is not UTC: Spark's numbers agree with the Python engine's."""
    model = parse_model(model_text, "generated.yaml")
    load_spark(spark, data)
    df = spark.sql(score_sql(model, JsonTables(ts="ts"), AS_OF, "spark", detail=True))
    got = sql_rows([r.asDict(recursive=True) for r in df.collect()], None)
    assert_same(python_scores(model, data), got, "spark")
