"""What `score` and `explain` give back: lead columns carried through, the run's summary, JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest

from leadscore.demo import generate
from tests.cli_helpers import STARTER, ls


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("out")
    f = generate(d, 120, seed=11)
    return [
        str(STARTER),
        "--leads",
        str(f.leads),
        "--events",
        str(f.events),
        "--as-of",
        "2026-06-01",
    ]


def _leads(files: list[str]) -> dict[str, dict[str, str]]:
    with open(files[2], newline="", encoding="utf-8") as f:
        return {r["lead_id"]: r for r in csv.DictReader(f)}


def test_include_copies_lead_columns_into_jsonl_records(files):
    plain = [json.loads(x) for x in ls("score", *files, "-q").stdout.splitlines()]
    got = [
        json.loads(x)
        for x in ls("score", *files, "-q", "--include", "email,company.name").stdout.splitlines()
    ]
    leads = _leads(files)
    assert len(got) == len(plain) == 120
    for p, g in zip(plain, got, strict=True):
        assert list(g) == [*p, "email", "company.name"]
        assert {k: g[k] for k in p} == p
        assert g["email"] == leads[g["lead_id"]]["email"]
        assert g["company.name"] == leads[g["lead_id"]]["company.name"]


def test_include_in_csv_to_a_file(files, tmp_path):
    out = tmp_path / "scores.csv"
    ls("score", *files, "-q", "-f", "csv", "-o", str(out), "--include", "email")
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0].keys() >= {"lead_id", "reasons", "email"} and list(rows[0])[-1] == "email"
    leads = _leads(files)
    assert all(r["email"] == leads[r["lead_id"]]["email"] for r in rows)
    stdout = ls("score", *files, "-q", "-f", "csv", "--include", "email").stdout
    assert stdout == out.read_text()


@pytest.mark.parametrize(
    ("include", "needle"),
    [
        ("emial", "--include 'emial': the leads have no such column; did you mean 'email'?"),
        ("score", "--include 'score' is already a key of every record"),
    ],
)
def test_include_mistakes(files, include, needle):
    proc = ls("score", *files, "--include", include, ok=False)
    assert proc.returncode == 1 and needle in proc.stderr


def test_the_summary_gives_the_mql_count_rate_and_grade_matrix(files):
    records = [json.loads(x) for x in ls("score", *files, "-q").stdout.splitlines()]
    mql = sum(r["mql"] for r in records)
    err = ls("score", *files).stderr
    assert f"MQLs: {mql:,} ({mql / len(records):.1%})" in err
    assert "Grades (leads): fit letter × engagement digit" in err
    grades = {}
    for r in records:
        grades[r["grade"]] = grades.get(r["grade"], 0) + 1
    a_row = next(line for line in err.splitlines() if line.startswith("│ A"))
    cells = [c.strip() for c in a_row.strip("│").split("│")]
    assert cells == ["A", *(str(grades.get(f"A{d}", 0)) for d in "1234")]


def test_explain_json_agrees_with_the_record(files):
    records = {
        r["lead_id"]: r for r in map(json.loads, ls("score", *files, "-q").stdout.splitlines())
    }
    lead = max(records.values(), key=lambda r: r["score"])["lead_id"]
    ex = json.loads(ls("explain", *files, "--lead", lead, "--format", "json").stdout)
    assert {k: ex[k] for k in records[lead]} == records[lead]
    assert ex["as_of"] == "2026-06-01T00:00:00Z" and ex["decision"]["mql"] == records[lead]["mql"]
    held = [r for r in ex["fit_rules"] if r["holds"]]
    assert sum(r["points"] for r in held) == pytest.approx(ex["fit_before_max"])
    counted = [r for r in ex["engagement_rules"] if r["events"]]
    assert counted and all(len(r["counted"]) == r["events"] for r in counted)
    bad = ls("explain", *files, "--lead", lead, "--format", "yaml", ok=False)
    assert bad.returncode == 1 and "--format 'yaml' is not one of table, json" in bad.stderr
