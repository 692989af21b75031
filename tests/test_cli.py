"""The `leadscore` command as a user runs it: a real process, real files, real databases."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import sqlglot

from leadscore.demo import generate
from leadscore.sql import DIALECTS
from leadscore.sql.sqlite import connect_functions
from tests.cli_helpers import ls

KEYS = ["lead_id", "fit", "engagement", "score", "grade", "mql", "fast_track", "reasons"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("project")
    ls("init", cwd=d)
    generate(d, 400, seed=3)  # leads.csv, events.parquet
    generate(d / "csv", 400, seed=3, events_format="csv")
    return d


def test_init_writes_a_model_that_validates_and_does_not_overwrite(project):
    text = (project / "leadscore.yaml").read_text()
    assert "# change" in text and "fast_track: true" in text and "min_fit" in text
    out = ls("validate", "leadscore.yaml", cwd=project)
    assert "leadscore.yaml: ok" in out.stdout and "9 fit rules" in out.stdout
    again = ls("init", cwd=project, ok=False)
    assert again.returncode == 1 and "already exists; pass --force" in again.stderr


def test_validate_lists_every_problem_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'model: 1\nname: x\nfit:\n  rules:\n    - name: a\n      when: {field: title, matches: "(["}\n'
        "      pionts: 5\nmql: {threshold: 50}\n"
    )
    proc = ls("validate", str(bad), ok=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert f"{bad}:6:37: 'matches' on 'title' is not a valid regular expression" in proc.stderr
    assert (
        f"{bad}:7:7: unknown key 'pionts' in fit rule 'a' — did you mean 'points'?" in proc.stderr
    )
    assert len(lines) == 3


def test_validate_checks_every_file_even_after_a_missing_one(project):
    proc = ls(
        "validate", "missing-1.yaml", "missing-2.yaml", "leadscore.yaml", cwd=project, ok=False
    )
    assert proc.returncode == 1
    assert "missing-1.yaml: no such model file" in proc.stderr
    assert "missing-2.yaml: no such model file" in proc.stderr
    assert "leadscore.yaml: ok" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_score_jsonl_has_exactly_the_spec_keys(project):
    proc = ls(
        "score",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        "2026-06-01",
        cwd=project,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 400
    assert all(list(r) == KEYS for r in rows)
    assert [r["lead_id"] for r in rows] == sorted(r["lead_id"] for r in rows)
    assert "Scored 400 leads" in proc.stderr and "2026-06-01T00:00:00Z" in proc.stderr
    # CSV events give the same scores as Parquet events
    other = ls(
        "score",
        "--leads",
        "csv/leads.csv",
        "--events",
        "csv/events.csv",
        "--as-of",
        "2026-06-01",
        "-q",
        cwd=project,
    )
    assert [json.loads(line) for line in other.stdout.splitlines()] == rows
    assert other.stderr == ""


def test_score_csv_and_output_file(project, tmp_path):
    out = tmp_path / "scores.csv"
    ls(
        "score",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        "2026-06-01",
        "--format",
        "csv",
        "--output",
        str(out),
        cwd=project,
    )
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == KEYS and len(rows) == 400
    assert {r["mql"] for r in rows} == {"true", "false"}
    assert all(isinstance(json.loads(r["reasons"]), list) for r in rows)
    stdout = ls(
        "score",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        "2026-06-01",
        "--format",
        "csv",
        "-q",
        cwd=project,
    ).stdout
    assert list(csv.DictReader(io.StringIO(stdout))) == rows
    jl = tmp_path / "scores.jsonl"
    ls(
        "score",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        "2026-06-01",
        "-o",
        str(jl),
        cwd=project,
    )
    first = json.loads(jl.read_text().splitlines()[0])
    assert list(first) == KEYS and first["lead_id"] == rows[0]["lead_id"]
    assert first["score"] == float(rows[0]["score"])


def test_score_table(project):
    proc = ls(
        "score",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        "2026-06-01",
        "--format",
        "table",
        "--limit",
        "5",
        cwd=project,
    )
    assert "400 leads" in proc.stdout and "highest scores first" in proc.stdout
    assert "Showing 5 of 400" in proc.stdout


def test_explain_agrees_with_score(project):
    rows = [
        json.loads(line)
        for line in ls(
            "score",
            "--leads",
            "leads.csv",
            "--events",
            "events.parquet",
            "--as-of",
            "2026-06-01",
            "-q",
            cwd=project,
        ).stdout.splitlines()
    ]
    mql = next(r for r in rows if r["mql"])
    proc = ls(
        "explain",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        "2026-06-01",
        "--lead",
        mql["lead_id"],
        cwd=project,
    )
    assert f"= score {mql['score']:g}" in proc.stdout
    assert "→ MQL" in proc.stdout
    assert "Fit rules" in proc.stdout and "Engagement rules" in proc.stdout
    missing = ls("explain", "--leads", "leads.csv", "--lead", "L-0001", cwd=project, ok=False)
    assert (
        missing.returncode == 1 and "no lead with lead_id 'L-0001'; did you mean" in missing.stderr
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["score", "--leads", "nope.csv"], "nope.csv: no such file"),
        (
            ["score", "--leads", "leads.csv", "--as-of", "someday"],
            "--as-of 'someday' is not a date",
        ),
        (["score", "--leads", "leads.csv", "--format", "xml"], "--format 'xml' is not one of"),
        (["score", "missing.yaml", "--leads", "leads.csv"], "missing.yaml: no such model file"),
        (["score"], "give the leads file with --leads"),
        (["sql", "--dialect", "oracle"], "--dialect 'oracle' is not one of"),
        (["explain", "--leads", "leads.csv"], "say which lead with --lead"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(project, args, needle):
    proc = ls(*args, cwd=project, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ")
    assert needle in proc.stderr


def test_usage_errors_exit_2(project):
    proc = ls("score", "--no-such-option", cwd=project, ok=False)
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_demo_prints_the_summary_and_is_reproducible(tmp_path):
    one = ls("demo", "--dir", "d1", cwd=tmp_path)
    ls("demo", "--dir", "d2", cwd=tmp_path)
    for needle in (
        "5,000 leads",
        "MQLs:",
        "Grades",
        "Most frequent reasons",
        "Top leads",
        "leadscore explain",
    ):
        assert needle in one.stdout
    assert (tmp_path / "d1" / "scores.jsonl").read_text() == (
        tmp_path / "d2" / "scores.jsonl"
    ).read_text()
    rows = [json.loads(x) for x in (tmp_path / "d1" / "scores.jsonl").read_text().splitlines()]
    n_mql = sum(r["mql"] for r in rows)
    assert len(rows) == 5000 and 0 < n_mql < 5000
    assert f"MQLs: {n_mql:,}" in one.stdout


# ---------------------------------------------------------------- the SQL a user pastes elsewhere

AS_OF = "2026-06-01T00:00:00Z"


def _sql(project: Path, dialect: str) -> str:
    return ls("sql", "--dialect", dialect, "--as-of", AS_OF, cwd=project).stdout


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sql_renders_for_every_dialect_and_parses_back(project, dialect):
    text = _sql(project, dialect)
    assert text.startswith("-- leadscore model 'b2b-saas-starter'")
    (tree,) = sqlglot.parse(text, read=dialect)
    assert tree is not None


def _rows(project: Path) -> tuple[list[tuple], list[tuple]]:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    leads = con.execute(
        "SELECT lead_id, CAST(to_json(json_object('email', email, 'title', title, 'country', country, "
        "'company', json_object('employees', \"company.employees\", 'industry', \"company.industry\", "
        "'technologies', \"company.technologies\"))) AS VARCHAR) FROM read_csv(?, all_varchar=true)",
        [str(project / "leads.csv")],
    ).fetchall()
    events = con.execute(
        "SELECT lead_id, event, timestamp, CAST(to_json(properties) AS VARCHAR) FROM read_parquet(?)",
        [str(project / "events.parquet")],
    ).fetchall()
    return leads, events


def _expected(project: Path) -> dict[str, dict]:
    out = ls(
        "score",
        "--leads",
        "leads.csv",
        "--events",
        "events.parquet",
        "--as-of",
        AS_OF,
        "-q",
        cwd=project,
    )
    return {r["lead_id"]: r for r in map(json.loads, out.stdout.splitlines())}


def _check(expected: dict[str, dict], got: dict[str, tuple]) -> None:
    assert set(got) == set(expected)
    for lid, r in expected.items():
        fit, eng, score, grade, mql, fast, reasons = got[lid]
        assert (float(fit), float(eng), float(score)) == pytest.approx(
            (r["fit"], r["engagement"], r["score"]), abs=1e-6
        )
        assert (grade, bool(mql), bool(fast)) == (r["grade"], r["mql"], r["fast_track"])
        if isinstance(reasons, str):
            reasons = json.loads(reasons)
        assert [{"rule": x["rule"], "points": float(x["points"])} for x in reasons] == r["reasons"]


COLS = "lead_id, fit, engagement, score, grade, mql, fast_track, reasons"


def test_rendered_duckdb_sql_runs_on_json_tables(project):
    leads, events = _rows(project)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("CREATE TABLE leads (lead_id VARCHAR, traits JSON)")
    con.execute(
        "CREATE TABLE events (lead_id VARCHAR, event VARCHAR, ts TIMESTAMP, properties JSON)"
    )
    con.executemany("INSERT INTO leads VALUES (?, ?)", leads)
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", events)
    got = {
        r[0]: r[1:]
        for r in con.execute(
            f"SELECT {COLS} FROM ({_sql(project, 'duckdb').rstrip().rstrip(';')})"
        ).fetchall()
    }
    _check(_expected(project), got)


@pytest.mark.postgres
def test_rendered_postgres_sql_runs_on_postgresql(project, pg_url):
    import psycopg

    leads, events = _rows(project)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE leads (lead_id text PRIMARY KEY, traits json)")
        conn.execute(
            "CREATE TABLE events (lead_id text, event text, ts timestamp, properties json)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO leads VALUES (%s, %s)", leads)
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s)", events)
        rows = conn.execute(
            f"SELECT {COLS} FROM ({_sql(project, 'postgres').rstrip().rstrip(';')}) q"
        ).fetchall()
    _check(_expected(project), {r[0]: r[1:] for r in rows})


def test_rendered_sqlite_sql_runs_on_sqlite(project):
    leads, events = _rows(project)
    con = sqlite3.connect(":memory:")
    connect_functions(con)
    con.execute("CREATE TABLE leads (lead_id TEXT, traits TEXT)")
    con.execute("CREATE TABLE events (lead_id TEXT, event TEXT, ts TEXT, properties TEXT)")
    con.executemany("INSERT INTO leads VALUES (?, ?)", leads)
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        [(a, b, ts.replace(tzinfo=None).isoformat(sep=" "), p) for a, b, ts, p in events],
    )
    rows = con.execute(
        f"SELECT {COLS} FROM ({_sql(project, 'sqlite').rstrip().rstrip(';')})"
    ).fetchall()
    _check(_expected(project), {r[0]: r[1:] for r in rows})


def test_version():
    proc = ls("--version")
    assert proc.stdout.startswith("leadscore ")


def test_as_of_defaults_to_now(project):
    # with no --as-of the run is scored now: the summary names today's date
    proc = ls("score", "--leads", "leads.csv", "--format", "jsonl", cwd=project)
    assert datetime.now(UTC).strftime("%Y-%m-%d") in proc.stderr
