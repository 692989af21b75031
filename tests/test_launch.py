"""The quick start of ``leadscore score --quiet``: the same options, bytes, warnings and errors
as the full command line, and the check for rules that fired for no lead without the reasons."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadscore.batch import run
from leadscore.demo import generate
from leadscore.launch import QUICK_SCORE_OPTIONS, SCORE_OPTIONS, quick_score_args
from leadscore.model import load_model

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("launch")
    files = generate(d, 300, seed=11)
    text = STARTER.read_text()
    head, tail = text.split("engagement:", 1)
    never = (
        "    - name: Giant companies\n"
        "      when: {field: company.employees, gt: 100000000}\n"
        "      points: 5\n"
    )
    model = d / "never.yaml"
    model.write_text(head.rstrip("\n") + "\n" + never + "\nengagement:" + tail)
    return model, files.leads, files.events


def ls(*args: str, full: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("LEADSCORE_DEBUG", None)
    if full:  # the full command line, as any run that the quick start does not take
        env["LEADSCORE_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_the_quick_options_are_the_score_commands_own():
    """The command line declares the options the quick start takes from its one table: each is
    a parameter of `score` with exactly the table's spellings and the same kind (flag or value),
    and no other parameter of `score` has any of those spellings."""
    import typer

    from leadscore.cli import app

    score = typer.main.get_command(app).commands["score"]  # type: ignore[attr-defined]
    params = {p.name: p for p in score.params}
    for key, (names, flag) in SCORE_OPTIONS.items():
        assert key in params, key
        p = params[key]
        assert (tuple(p.opts) + tuple(p.secondary_opts), p.is_flag) == (names, flag), key
    others = {n for p in score.params if p.name not in SCORE_OPTIONS for n in p.opts}
    assert not others & set(QUICK_SCORE_OPTIONS), others & set(QUICK_SCORE_OPTIONS)
    assert {k for k, _ in QUICK_SCORE_OPTIONS.values()} == set(SCORE_OPTIONS)
    # the quick start takes every spelling in the table
    for name, (key, flag) in QUICK_SCORE_OPTIONS.items():
        value = [] if flag else [{"fmt": "csv", "engine": "duckdb"}.get(key, "x")]
        quiet = [] if key == "quiet" else ["--quiet"]
        got = quick_score_args(["score", "m.yaml", *quiet, name, *value])
        assert got is not None and got[key] == (value[0] if value else True), name


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "m.yaml", "--leads", "l.csv", "-q"],  # jsonl to standard output
        ["score", "--format=csv", "-o", "out.csv", "--quiet", "--leads", "l.csv"],
        ["score", "m.yaml", "--leads", "l.csv", "--engine", "duckdb", "-q", "--skip-bad-rows"],
    ],
)
def test_quiet_jsonl_and_csv_runs_start_quickly(argv):
    got = quick_score_args(argv)
    assert got is not None and got["quiet"] is True and got["leads"] == "l.csv"


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "m.yaml", "--leads", "l.csv"],  # a summary: rich prints it
        ["score", "m.yaml", "--leads", "l.csv", "-q", "--format", "table"],
        ["score", "m.yaml", "--leads", "l.csv", "-q", "--engine", "spark"],
        ["score", "m.yaml", "--leads", "l.csv", "-q", "--help"],
        ["score", "m.yaml", "--leads", "l.csv", "-q", "--limit", "3"],
        ["score", "m.yaml", "--leads", "a.csv", "--leads", "b.csv", "-q"],
        ["score", "m.yaml", "other.yaml", "--leads", "l.csv", "-q"],
        ["score", "m.yaml", "--leads", "-q"],
        ["score", "m.yaml", "--leads", "l.csv", "--quiet=yes"],
        ["score", "m.yaml", "--leads", "l.csv", "-qf", "csv"],
        ["--debug", "score", "m.yaml", "--leads", "l.csv", "-q"],
        ["validate", "m.yaml"],
        [],
    ],
)
def test_anything_else_goes_to_the_full_command_line(argv):
    assert quick_score_args(argv) is None


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_quick_and_full_runs_write_the_same_bytes_and_warnings(data, tmp_path, fmt):
    model, leads, events = data
    outs = []
    for full in (False, True):
        out = tmp_path / f"{'full' if full else 'quick'}.{fmt}"
        proc = ls(
            "score",
            str(model),
            "--leads",
            str(leads),
            "--events",
            str(events),
            "--as-of",
            "2026-06-01",
            "--format",
            fmt,
            "--output",
            str(out),
            "--include",
            "email",
            "-q",
            full=full,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append((out.read_bytes(), proc.stderr))
    assert outs[0] == outs[1]
    assert outs[0][0].count(b"\n") == 300 + (fmt == "csv")
    assert "fit rule 'Giant companies' fired for no lead (of 300)" in outs[0][1]


def test_quick_and_full_runs_say_the_same_errors(data, tmp_path):
    _, leads, _ = data
    for args in (
        ["score", str(tmp_path / "none.yaml"), "--leads", str(leads), "-q"],
        ["score", str(STARTER), "--leads", str(leads), "--as-of", "soon", "-q"],
        ["score", str(STARTER), "--leads", str(tmp_path / "no.csv"), "-q"],
    ):
        quick, full = ls(*args), ls(*args, full=True)
        assert quick.returncode == full.returncode == 1
        assert quick.stderr == full.stderr and quick.stderr.startswith("Error: ")


def test_rules_fired_from_points_alone_match_the_reasons(data):
    model_path, leads, events = data
    model = load_model(model_path)
    batch = run(model, leads, events, AS_OF)
    rows = batch.con.execute(
        f"SELECT DISTINCT r.rule FROM (SELECT unnest(reasons) AS r FROM ({batch.query}))"
    ).fetchall()
    from_reasons = {name for (name,) in rows}
    assert "Giant companies" not in from_reasons and len(from_reasons) > 10
    # a sample of one lead leaves most rules to the pass over every lead
    for sample in (1, 10_000):
        assert batch.fired_rules(sample=sample) == from_reasons
