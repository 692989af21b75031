"""Behaviour stored as columns: engagement rules that read a count or amount on the lead."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from leadscore.batch import run
from leadscore.engine import Event, Scorer
from leadscore.engine.scorer import us_of
from leadscore.engine.traits import date_us, units_of
from leadscore.errors import ModelError
from leadscore.model import number_of, parse_model
from leadscore.sql import JsonTables, score_sql
from leadscore.sql.sqlite import connect_functions

ROOT = Path(__file__).resolve().parent.parent
XEDU = ROOT.parent / "shared" / "data" / "xeducation" / "Leads.csv"
RECIPE = ROOT / "examples" / "xeducation" / "leadscore.yaml"
AS_OF = datetime(2026, 6, 1, 12, tzinfo=UTC)
MODEL = """
model: 1
name: traits
missing_values: [Select]
engagement:
  half_life_days: 30
  window_days: 90
  rules:
    - {name: Visits, trait: TotalVisits, points: 2, cap: 15}
    - {name: Time, trait: time, points: 0.01, at: last, fast_track: true}
    - {name: Demo, event: Demo, points: 40}
mql: {threshold: 20}
grades: {fit: {A: 40, B: 25, C: 10}, engagement: {1: 40, 2: 20, 3: 5}}
"""
LEADS = {
    # 5 visits: 10; 600 s dated exactly 30 days ago: 6 halved to 3; a demo: 40
    "a": {"TotalVisits": "5", "time": 600, "last": "2026-05-02T12:00:00Z"},
    # a placeholder is no visits; 300 s just over 30 days old: a hair under 1.5
    "b": {"TotalVisits": "Select", "time": "300", "last": "2026-05-02T11:59:59.999999"},
    # 20 visits capped at 15; 30 February is 2 March, outside the 90-day window
    "c": {"TotalVisits": 20, "time": "100", "last": "2026-02-30"},
    # negative counts count nothing; a date in the future does not count yet
    "d": {"TotalVisits": -3, "time": "50", "last": "2026-06-01 12:00:01"},
    # an offset is not read: the date is missing, so the time does not count
    "e": {"TotalVisits": "2.5", "time": "50", "last": "2026-05-31T12:00:00+02:00"},
    "f": {},
}
EVENTS = [("a", "Demo", AS_OF)]
EXPECTED = {  # engagement, fast_track
    "a": (53.0, True),
    "b": (pytest.approx(1.5, abs=1e-6), True),
    "c": (15.0, False),
    "d": (0.0, False),
    "e": (5.0, False),
    "f": (0.0, False),
}


def _python() -> dict[str, tuple[float, bool]]:
    scorer = Scorer(parse_model(MODEL))
    out = {}
    for lead_id, traits in LEADS.items():
        evs = [Event(n, ts) for i, n, ts in EVENTS if i == lead_id]
        s = scorer.score(traits, evs, AS_OF)
        out[lead_id] = (s.engagement, s.fast_track)
    return out


def test_python_engine_scores_counts_on_the_lead():
    assert _python() == EXPECTED


def test_dates_are_read_as_every_engine_reads_them():
    for text, when in [
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        (" 2026-06-01T12:34:56.5Z ", datetime(2026, 6, 1, 12, 34, 56, 500000, tzinfo=UTC)),
        ("1999-02-28 23:59", datetime(1999, 2, 28, 23, 59, tzinfo=UTC)),
        ("2000-02-29t00:00:00.000001z", datetime(2000, 2, 29, 0, 0, 0, 1, tzinfo=UTC)),
        ("1969-12-31T23:59:59", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ]:
        assert date_us(text) == us_of(when), text
    assert date_us("2026-02-30") == us_of(datetime(2026, 3, 2, tzinfo=UTC))
    for bad in ("2026-05-01T10:00+02:00", "2026-13-01", "05/01/2026", "", None, "Select"):
        assert date_us(bad, frozenset({"select"})) is None, bad
    assert units_of("3") == 3 and units_of(0) is None and units_of("n/a") is None


def _duckdb(model) -> dict[str, tuple[float, bool]]:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("CREATE TABLE leads (lead_id VARCHAR, traits JSON)")
    con.execute(
        "CREATE TABLE events (lead_id VARCHAR, event VARCHAR, ts TIMESTAMP, properties JSON)"
    )
    con.executemany(
        "INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t in LEADS.items()]
    )
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, '{}')",
        [(i, n, ts.replace(tzinfo=None)) for i, n, ts in EVENTS],
    )
    cur = con.execute(score_sql(model, JsonTables(ts="ts"), AS_OF, "duckdb", detail=True))
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return {r["lead_id"]: (r["engagement_raw"], bool(r["fast_track"])) for r in rows}


def _sqlite(model) -> dict[str, tuple[float, bool]]:
    con = sqlite3.connect(":memory:")
    connect_functions(con)
    con.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    con.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts_us INTEGER, properties TEXT)")
    con.executemany(
        "INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t in LEADS.items()]
    )
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, '{}')", [(i, n, us_of(ts)) for i, n, ts in EVENTS]
    )
    cur = con.execute(score_sql(model, JsonTables(ts_us="ts_us"), AS_OF, "sqlite", detail=True))
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return {r["lead_id"]: (r["engagement_raw"], bool(r["fast_track"])) for r in rows}


@pytest.mark.parametrize("engine", [_duckdb, _sqlite])
def test_sql_scores_counts_on_the_lead(engine):
    assert engine(parse_model(MODEL)) == EXPECTED


def test_the_batch_reads_trait_rules_from_files(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "lead_id,TotalVisits,time,last\n"
        + "".join(
            f"{i},{t.get('TotalVisits', '')},{t.get('time', '')},{t.get('last', '')}\n"
            for i, t in LEADS.items()
        )
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"lead_id": "a", "event": "Demo", "timestamp": AS_OF.isoformat()}) + "\n"
    )
    batch = run(parse_model(MODEL), leads, events, AS_OF)
    got = {r["lead_id"]: r for r in map(json.loads, batch.jsonl_lines())}
    assert {i: (r["engagement"], r["fast_track"]) for i, r in got.items()} == {
        i: (round(e if isinstance(e, float) else 1.5, 2), f) for i, (e, f) in EXPECTED.items()
    }
    assert got["a"]["grade"] == "D1" and got["c"]["grade"] == "D3"


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("{name: X, points: 1}", "has no 'event' (the event it counts) or 'trait'"),
        ("{name: X, event: E, trait: T, points: 1}", "has both 'event' and 'trait'"),
        ("{name: X, event: E, at: D, points: 1}", "'at' of engagement rule 'X' dates a trait"),
        ("{name: X, trait: T, when: {field: a, exists: true}, points: 1}", "write a fit rule"),
        ("{name: X, trait: a..b, points: 1}", "has an empty part between dots"),
        ("{name: X, trait: T, points: -1, cap: 3}", "needs positive points"),
    ],
)
def test_invalid_trait_rules(rule, needle):
    src = f"model: 1\nname: m\nengagement:\n  rules:\n    - {rule}\nmql: {{threshold: 1}}\n"
    with pytest.raises(ModelError) as e:
        parse_model(src, "m.yaml")
    assert any(needle in str(p) for p in e.value.problems), [str(p) for p in e.value.problems]


def test_the_live_service_refuses_trait_rules():
    from leadscore.service.models import _events_only

    with pytest.raises(ModelError, match="does not take trait rules"):
        _events_only(parse_model(MODEL, "m.yaml"))


def test_explain_shows_what_a_trait_rule_read():
    ex = Scorer(parse_model(MODEL)).explain(LEADS["b"], [], AS_OF)
    time_rule = next(r for r in ex.rules if r.rule.name == "Time")
    assert time_rule.matched and dict(time_rule.values) == {
        "time": "300",
        "last": "2026-05-02T11:59:59.999999",
    }
    assert ex.score.engagement == pytest.approx(time_rule.points)


@pytest.mark.skipif(
    not XEDU.is_file(), reason=f"the X Education export is not beside the project ({XEDU})"
)
def test_the_xeducation_recipe(tmp_path):
    """The recipe in docs/model.md on the real export: engagement from its columns spreads the
    grades over every digit, and the model separates converted leads (no leaky column read)."""
    base = [
        str(RECIPE),
        "--leads",
        str(XEDU),
        "--id-column",
        "Prospect ID",
        "--as-of",
        "2026-06-01",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", "score", *base, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(records) == 9240
    digits = {r["grade"][1] for r in records}
    assert digits == {"1", "2", "3", "4"}
    bt = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadscore",
            "backtest",
            *base,
            "--outcome-column",
            "Converted",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bt.returncode == 0, bt.stderr
    report = json.loads(bt.stdout)
    assert report["models"][0]["roc_auc"] > 0.8


#: trait values at the ends of a double: 2 points a unit of 1e308 was infinity, and infinity
#: minus infinity NaN, written as ``Infinity``/``NaN`` (not JSON) or refused by PostgreSQL
HUGE_MODEL = """
model: 1
name: huge
fit:
  rules:
    - {name: Many visits, when: {field: visits, gt: 100}, points: 5}
engagement:
  rules:
    - {name: Visits, trait: visits, points: 2}
    - {name: Refunds, trait: refunds, points: -3}
mql: {threshold: 20}
"""
HUGE_LEADS: dict[str, dict[str, object]] = {
    "native": {"visits": 1e308, "refunds": 1.7e308},  # numbers in the file, not text
    "digits": {"visits": "1" + "0" * 307},  # 1e307 written out: twice that is above a double
    "longer": {"visits": "9" * 310},  # beyond a double altogether
    "tiny": {"visits": 1e-100, "refunds": 5e-324},
    "largest": {"visits": "9.5e99"},  # the largest number there is: finite at 2 points a unit
    "plain": {"visits": 7, "refunds": "1"},
}
#: lead: (fit, engagement); numbers beyond 1e100 (or below 1e-99) are not numbers
HUGE_EXPECTED = {
    "native": (0.0, 0.0),
    "digits": (0.0, 0.0),
    "longer": (0.0, 0.0),
    "tiny": (0.0, 0.0),
    "largest": (5.0, 1.9e100),
    "plain": (0.0, 11.0),
}


def _no_constants(name: str) -> float:
    raise AssertionError(f"{name} is not JSON")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_trait_values_beyond_a_double_score_as_no_number(tmp_path, fmt):
    """`leadscore score` on such leads writes finite numbers (valid JSON), as the Python engine
    computes them."""
    from tests.cli_helpers import ls

    model = tmp_path / "m.yaml"
    model.write_text(HUGE_MODEL)
    leads = tmp_path / f"leads.{fmt}"
    if fmt == "jsonl":
        leads.write_text(
            "".join(json.dumps({"lead_id": i, **t}) + "\n" for i, t in HUGE_LEADS.items())
        )
    else:
        leads.write_text(
            "lead_id,visits,refunds\n"
            + "".join(
                f"{i},{t.get('visits', '')},{t.get('refunds', '')}\n" for i, t in HUGE_LEADS.items()
            )
        )
    for quiet in ([], ["--quiet"]):
        out = ls("score", str(model), "--leads", str(leads), "--as-of", "2026-06-01", *quiet)
        got = {
            r["lead_id"]: (r["fit"], r["engagement"])
            for r in (json.loads(x, parse_constant=_no_constants) for x in out.stdout.splitlines())
        }
        assert got == HUGE_EXPECTED, (fmt, quiet)
    scorer = Scorer(parse_model(HUGE_MODEL))
    python = {i: scorer.score(t, [], AS_OF) for i, t in HUGE_LEADS.items()}
    assert {i: (s.fit, s.engagement) for i, s in python.items()} == HUGE_EXPECTED


def test_numbers_end_where_two_exponent_digits_do():
    for value in (1e100, -1e100, 1.7e308, "1" + "0" * 100, "99e99", 1e-100, "0.09e-98", 10**400):
        assert units_of(value) is None and number_of(value) is None, value
    for value, n in ((9.5e99, 9.5e99), ("-9.5e99", -9.5e99), ("1e-99", 1e-99), (0.0, 0.0)):
        assert number_of(value) == n, value
    assert number_of("0" * 190 + "5") == 5 and number_of("0" * 201 + "5") is None
