"""The command line reads well: help with choices and examples, no wrapping in a pipe, plurals,
and docs/cli.md made from --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTER = str(ROOT / "leadscore" / "templates" / "starter.yaml")


def ls(*args: str, columns: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", *args], capture_output=True, text=True, env=env
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_docs_cli_md_is_the_generated_page():
    from leadscore.cli.docs import page

    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == page(), (
        "docs/cli.md is out of date: python -m leadscore.cli.docs > docs/cli.md"
    )


COMMANDS = [
    "init",
    "validate",
    "score",
    "explain",
    "sql",
    "demo",
    "backtest",
    "learn",
    "serve",
    "keys create",
    "webhooks deliveries",
    "route",
    "import",
    "report funnel",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_choices_placeholders_and_an_example(command):
    text = ls(*command.split(), "--help").stdout
    assert "Example:\n    leadscore " + command in text
    for python_type in ("<str>", "<path>", "<int>", "<float>", "TEXT", "INTEGER"):
        assert python_type not in text, (command, python_type)
    assert text.startswith(f"Usage: leadscore {command} ")


def test_choices_are_in_the_help():
    assert "-f, --format jsonl|csv|table" in ls("score", "--help").stdout
    assert "--dialect duckdb|postgres|sqlite|snowflake|bigquery|spark" in ls("sql", "--help").stdout
    assert "--lead LEAD_ID" in ls("explain", "--help").stdout


def test_help_in_a_pipe_is_not_wrapped_and_a_terminal_width_is_kept():
    piped = ls("score", "--help").stdout
    line = next(x for x in piped.splitlines() if x.strip().startswith("--events FILE"))
    assert line.rstrip().endswith("lead_id, event, timestamp, properties.")
    narrow = ls("score", "--help", columns="60").stdout
    # the example is a command to copy: it is never wrapped
    assert max(len(x) for x in narrow.splitlines() if "leadscore score leadscore" not in x) <= 60


def test_limit_rejects_negatives():
    proc = ls("score", STARTER, "--leads", "x.csv", "--limit", "-1")
    assert proc.returncode == 2 and "--limit" in proc.stderr


def test_counts_are_written_with_plurals(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,title\nA,VP\n")
    events = tmp_path / "events.csv"
    events.write_text("lead_id,event,timestamp\nA,page,2026-05-01\n")
    proc = ls(
        "score", STARTER, "--leads", str(leads), "--events", str(events), "--as-of", "2026-06-01"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Scored 1 lead (1 event) at 2026-06-01T00:00:00Z" in proc.stderr
    table = ls("score", STARTER, "--leads", str(leads), "--as-of", "2026-06-01", "-f", "table")
    assert "1 lead, 0 MQLs" in table.stdout


def test_a_missing_trait_is_shown_as_missing(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,title\nA,\n")
    proc = ls("explain", STARTER, "--leads", str(leads), "--lead", "A", "--as-of", "2026-06-01")
    assert proc.returncode == 0, proc.stderr
    assert "title=(missing)" in proc.stdout and "None" not in proc.stdout
