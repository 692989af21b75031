"""`leadscore validate` with routing files and `leadscore route --explain`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ls

from .handoff_helpers import ISSUE_EXAMPLE

LEADSCORE = [sys.executable, "-m", "leadscore"]
# run this checkout's leadscore, whatever the working directory
ROOT = str(Path(__file__).resolve().parents[1])
MODEL = """\
model: 1
name: t
fit:
  rules:
    - {name: Big, when: {field: company.employees, gte: 1000}, points: 40}
engagement:
  rules:
    - {name: Demo, event: demo_request, points: 30, fast_track: true}
mql: {threshold: 50}
grades:
  fit: {A: 40, B: 20, C: 10}
  engagement: {1: 30, 2: 20, 3: 10}
"""
BIG = {"company": {"employees": 5000}, "country": "US"}
# Tuesday 3 March 2026, 10:00 and 22:00 in New York
OPEN = "2026-03-03T15:00:00Z"
NIGHT = "2026-03-04T03:00:00Z"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "routing.yaml").write_text(ISSUE_EXAMPLE, encoding="utf-8")
    (tmp_path / "model.yaml").write_text(MODEL, encoding="utf-8")
    (tmp_path / "lead.json").write_text(json.dumps(BIG), encoding="utf-8")
    return tmp_path


def test_validate_takes_routing_files_and_models_together(project):
    proc = ls("validate", "routing.yaml", "model.yaml", cwd=project)
    assert proc.stdout.splitlines() == [
        "routing.yaml: ok — routing 'acme-sales': 2 teams, 2 rules, 2 SLAs, fallback lee@acme.io",
        "model.yaml: ok — model 't': 1 fit rule, 1 engagement rule, threshold 50",
    ]


def test_validate_names_file_line_column_and_the_fix_in_a_bad_routing_file(project):
    bad = ISSUE_EXAMPLE.replace("    team: smb\n", "    team: smbb\n").replace(
        "    max_open_mqls: 25", "    max_open_mqs: 25"
    )
    (project / "bad.yaml").write_text(bad, encoding="utf-8")
    proc = ls("validate", "bad.yaml", "routing.yaml", cwd=project, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "bad.yaml:6:5: unknown key 'max_open_mqs' in team 'enterprise' — did you mean "
        "'max_open_mqls'?",
        "bad.yaml:15:11: routing rule 'Everyone else' names team 'smbb', which is not in "
        "'teams' — did you mean 'smb'?",
    ]
    # the good file is still checked
    assert proc.stdout.startswith("routing.yaml: ok")


def test_validate_reports_a_routing_file_that_is_not_yaml(project):
    (project / "bad.yaml").write_text("routing: 1\nname: [x\n", encoding="utf-8")
    proc = ls("validate", "bad.yaml", cwd=project, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bad.yaml:3:1: this is not valid YAML")


def test_route_explain_table(project):
    proc = ls(
        "route",
        "--explain",
        "routing.yaml",
        "--lead",
        "lead.json",
        "--at",
        OPEN,
        "--away",
        "ann@acme.io",
        cwd=project,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "routing.yaml → raj@acme.io (team enterprise, rule 'Enterprise North America', round robin)"
    )
    text = proc.stdout
    assert "Enterprise North America" in text and "matched" in text
    assert "ann@acme.io (team enterprise)" in text and "skipped: away" in text
    assert "raj@acme.io (team enterprise)" in text and "assigned" in text
    assert (
        "SLA: 'Other MQLs within a business day': first touch within 1d, counted in working "
        "hours mon,tue,wed,thu,fri 09:00-18:00 America/New_York, due 2026-03-05T21:00:00Z "
        "(Thu 16:00 America/New_York)"
    ) in text
    assert lines[-1] == "Nothing was assigned (as of 2026-03-03T15:00:00Z)."
    assert proc.stderr == ""


@pytest.mark.parametrize("lead", ["lead.json", "small.json"])
def test_route_explain_reads_in_order_on_one_screen(project, lead):
    """Standard output and error merged, as a terminal shows them: the SLA line and the closing
    note are whole lines, in order, each ending in a newline."""
    (project / "small.json").write_text('{"fast_track": true}', encoding="utf-8")
    for columns in ("200", None):  # wrapping as a terminal, and one line each as in a pipe
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        }
        env.pop("COLUMNS", None)
        if columns:
            env["COLUMNS"] = columns
        proc = subprocess.run(
            [*LEADSCORE, "route", "--explain", "routing.yaml", "--lead", lead, "--at", OPEN],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=project,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout
        assert proc.stdout.endswith("\n")
        lines = proc.stdout.splitlines()
        assert lines[-2].startswith("SLA: '"), lines
        assert lines[-1] == "Nothing was assigned (as of 2026-03-03T15:00:00Z).", lines
        assert sum("Nothing was assigned" in line for line in lines) == 1


def test_route_explain_prints_names_and_values_as_written(project):
    """Rule names, emails and lead values are the user's text, never rich markup."""
    odd = ISSUE_EXAMPLE.replace("Everyone else", "Everyone [bold]else[/]")
    (project / "odd.yaml").write_text(odd, encoding="utf-8")
    (project / "odd.json").write_text('{"score": "[/x]"}', encoding="utf-8")
    proc = ls("route", "--explain", "odd.yaml", "--lead", "odd.json", "--at", OPEN, cwd=project)
    assert "Everyone [bold]else[/]" in proc.stdout
    assert "lead: score [/x]" in proc.stdout


def test_route_explain_json_from_stdin_with_a_model(project):
    lead = {
        "traits": BIG,
        "events": [{"event": "demo_request", "timestamp": "2026-03-03T14:55:00Z"}],
    }
    proc = ls(
        "route",
        "--explain",
        "routing.yaml",
        "--model",
        "model.yaml",
        "--at",
        NIGHT,
        "-f",
        "json",
        cwd=project,
        stdin=json.dumps(lead),
    )
    doc = json.loads(proc.stdout)
    assert doc["at"] == NIGHT
    assert (doc["owner"], doc["team"], doc["rule"], doc["kind"]) == (
        "lee@acme.io",
        None,
        "Enterprise North America",
        "fallback",
    )
    assert [s.get("reason") for s in doc["path"]] == [
        None,
        "outside hours",
        "outside hours",
        None,
    ]
    assert doc["lead"] == {
        "score": 70.0,
        "fit": 40.0,
        "engagement": 30.0,
        "grade": "A1",
        "fast_track": True,
    }
    assert doc["sla"] == {
        "name": "Demo within 5 minutes",
        "due_at": "2026-03-04T03:05:00Z",
        "within": "5m",
        "working_hours": None,
        "escalate_to": "lee@acme.io",
    }


def test_route_explain_with_state_given_on_the_command_line(project):
    proc = ls(
        "route",
        "--explain",
        "routing.yaml",
        "--lead",
        "lead.json",
        "--at",
        OPEN,
        "--open",
        "raj@acme.io=25",
        "--last",
        "enterprise=ann@acme.io",
        "-f",
        "json",
        cwd=project,
    )
    doc = json.loads(proc.stdout)
    assert doc["owner"] == "ann@acme.io"
    assert doc["path"][1] == {
        "step": "rep",
        "team": "enterprise",
        "rep": "raj@acme.io",
        "result": "skipped",
        "reason": "at cap",
        "open_mqls": 25,
        "max_open_mqls": 25,
    }
    proc = ls(
        "route",
        "--explain",
        "routing.yaml",
        "--lead",
        "lead.json",
        "--at",
        OPEN,
        "--account-owner",
        "Lee@Acme.io",
        "-f",
        "json",
        cwd=project,
    )
    assert json.loads(proc.stdout)["kind"] == "account"


@pytest.mark.parametrize(
    "args,message",
    [
        (["route", "routing.yaml", "--lead", "lead.json"], "only explains (pass --explain)"),
        (
            ["route", "--explain", "nope.yaml", "--lead", "lead.json"],
            "nope.yaml:1:1: no such file; give the path of a routing file",
        ),
        (
            ["route", "--explain", "routing.yaml", "--lead", "missing.json"],
            "missing.json: no such file",
        ),
        (
            ["route", "--explain", "routing.yaml", "--lead", "bad.json"],
            "bad.json: this is not JSON",
        ),
        (
            ["route", "--explain", "routing.yaml", "--lead", "list.json"],
            "the lead must be a JSON object",
        ),
        (
            ["route", "--explain", "routing.yaml", "--lead", "lead.json", "--open", "x"],
            "--open 'x': write it as EMAIL=N",
        ),
        (
            ["route", "--explain", "routing.yaml", "--lead", "lead.json", "-f", "csv"],
            "--format 'csv' is not one of table, json",
        ),
        (
            ["route", "--explain", "bad-routing.yaml", "--lead", "lead.json"],
            "bad-routing.yaml:16:11: 'fallback' must be a rep's email address, not 'lee'",
        ),
    ],
)
def test_route_errors_are_one_line_and_exit_1(project, args, message):
    (project / "bad.json").write_text("{nope", encoding="utf-8")
    (project / "list.json").write_text("[1]", encoding="utf-8")
    (project / "bad-routing.yaml").write_text(
        ISSUE_EXAMPLE.replace("fallback: lee@acme.io", "fallback: lee"), encoding="utf-8"
    )
    proc = ls(*args, cwd=project, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ")
    assert message in proc.stderr
