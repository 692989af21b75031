"""The rendered SQL as a dbt model (dbt-duckdb) keeps decaying: run on two dates, two answers.

The model file is what docs/warehouse.md tells a user to write: ``leadscore sql --dialect duckdb
--no-semicolon > models/lead_scores.sql``. ``dbt run`` runs under faketime at two dates two weeks
apart; each time the table dbt builds holds what the Python engine gives at that date.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from leadscore.model import load_model

from .test_cli import ls
from .test_parity import python_scores

DBT = Path(sys.executable).with_name("dbt")
FIRST = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECOND = FIRST + timedelta(days=14)


def data():
    out = []
    for i in range(12):
        traits = {
            "title": ["VP Sales", "Engineer", "Head of Ops"][i % 3],
            "company": {"employees": 40 * i},
        }
        evs = [
            (
                ["Pricing Page Viewed", "Demo Requested", "Email Opened"][k % 3],
                FIRST - timedelta(days=3 * k + i, microseconds=123_457 * k),
                {"path": "/pricing"} if k % 2 else {},
            )
            for k in range(i % 5 + 1)
        ]
        out.append((f"L-{i:03d}", traits, evs))
    return out


def write_project(root: Path) -> None:
    (root / "models").mkdir()
    (root / "dbt_project.yml").write_text(
        "name: leadscore_example\nversion: '1.0'\nprofile: leadscore_example\n"
        "models:\n  leadscore_example:\n    +materialized: table\n"
    )
    (root / "profiles.yml").write_text(
        "leadscore_example:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {root / 'warehouse.duckdb'}\n      threads: 1\n"
    )
    ls("init", cwd=root)
    sql = ls("sql", "leadscore.yaml", "--dialect", "duckdb", "--no-semicolon", cwd=root).stdout
    (root / "models" / "lead_scores.sql").write_text(sql)


def load_warehouse(path: Path, rows) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE leads (lead_id VARCHAR, traits JSON)")
    con.execute(
        "CREATE TABLE events (lead_id VARCHAR, event VARCHAR, ts TIMESTAMP, properties JSON)"
    )
    con.executemany("INSERT INTO leads VALUES (?, ?)", [(i, json.dumps(t)) for i, t, _ in rows])
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        [(i, n, ts.replace(tzinfo=None), json.dumps(p)) for i, _, evs in rows for n, ts, p in evs],
    )
    con.close()


def dbt_run_at(root: Path, when: datetime) -> dict[str, dict]:
    env = {**os.environ, "TZ": "UTC", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run(
        [
            "faketime",
            when.strftime("%Y-%m-%d %H:%M:%S"),
            str(DBT),
            "run",
            "--project-dir",
            str(root),
            "--profiles-dir",
            str(root),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    cur = con.execute("SELECT lead_id, score, mql, reasons FROM lead_scores")
    got = {
        r[0]: {"score": r[1], "mql": r[2], "reasons": [x["rule"] for x in r[3]]}
        for r in cur.fetchall()
    }
    con.close()
    return got


def test_dbt_model_keeps_decaying(tmp_path):
    assert shutil.which("faketime"), (
        "faketime is needed (Debian package faketime; .ci/run installs it)"
    )
    assert DBT.exists(), "dbt-duckdb is a dev dependency"
    write_project(tmp_path)
    rows = data()
    load_warehouse(tmp_path / "warehouse.duckdb", rows)
    model = load_model(tmp_path / "leadscore.yaml")
    results = []
    for when in (FIRST, SECOND):
        got = dbt_run_at(tmp_path, when)
        expected = python_scores(model, rows, when)
        assert got.keys() == expected.keys()
        for lead_id, e in expected.items():
            g = got[lead_id]
            # the clock runs on from `when` while dbt starts: a few seconds of decay at most
            assert abs(g["score"] - round(e["score"], 2)) <= 0.02, (when, lead_id)
            assert g["mql"] == e["mql"], (when, lead_id)
            assert g["reasons"] == [r for r, _ in e["reasons"]], (when, lead_id)
        results.append(got)
    decayed = [k for k in results[0] if results[1][k]["score"] < results[0][k]["score"]]
    assert len(decayed) >= 6, "two weeks later the engagement has decayed"
