"""A batch run's compiled query (leadscore.sql.plan) and the cache that keeps it between runs
(leadscore.sql.cache): a run from the cache writes the same bytes as a run that compiles, at any
instant; a changed model or input never finds an old entry; a damaged entry is ignored and
written again; a run from the cache does not import sqlglot. And the DuckDB spellings that make
the query cheaper (trimming traits, prefixes and suffixes) read values as the Python engine does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from leadscore import batch as batch_module
from leadscore.batch import run
from leadscore.demo import generate
from leadscore.engine import Scorer
from leadscore.model import load_model, parse_model
from leadscore.sql.cache import PlanCache, default_cache
from leadscore.sql.plan import ScorePlan
from leadscore.sql.text import slot

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

#: the starter model with a trait rule dated by a trait (the instant read in the fit scan too)
TRAIT_RULE = (
    "    - {name: Recent trial, trait: trial.seats, at: trial.started, points: 2, cap: 20}\n"
)


def _with_trait_rule(text: str) -> str:
    head, tail = text.split("\nmql:", 1)
    return head.rstrip("\n") + "\n" + TRAIT_RULE + "\nmql:" + tail


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plan")
    aware = generate(
        d / "aware", 200, seed=5, leads_format="parquet", events_format="parquet", timestamptz=True
    )
    naive = generate(d / "naive", 200, seed=5, leads_format="jsonl", events_format="csv")
    # leads with a dated trial for the trait rule: a Parquet file with two more columns
    leads = d / "trial-leads.parquet"
    con = duckdb.connect()
    con.execute(
        f'COPY (SELECT *, CAST(hash(lead_id) % 5 AS VARCHAR) AS "trial.seats", '
        f"'2026-0' || CAST(1 + hash(lead_id) % 6 AS VARCHAR) || '-15' AS \"trial.started\" "
        f"FROM read_parquet('{aware.leads}')) TO '{leads}' (FORMAT PARQUET)"
    )
    model = d / "trial.yaml"
    model.write_text(_with_trait_rule(STARTER.read_text()))
    return {
        "leads": aware.leads,
        "events": aware.events,
        "jsonl_leads": naive.leads,
        "csv_events": naive.events,
        "trial_leads": leads,
        "trial_model": model,
    }


def _bytes(model_path: Path, leads: Path, events: Path, out: Path, fmt: str, **kw) -> bytes:
    model = load_model(model_path)
    b = run(model, leads, events, kw.pop("as_of", AS_OF), count_orphans=False, **kw)
    b.write(fmt, None, out)
    return out.read_bytes()


def _entries(cache: PlanCache) -> list[Path]:
    return sorted(cache.directory.glob("*.json"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(
    "leads_key,events_key,model_key",
    [
        ("leads", "events", None),
        ("jsonl_leads", "csv_events", None),
        ("trial_leads", "events", "trial_model"),
    ],
)
def test_a_run_from_the_cache_writes_the_bytes_of_a_compiled_run(
    data, tmp_path, monkeypatch, fmt, leads_key, events_key, model_key
):
    model = data[model_key] if model_key else STARTER
    leads, events = data[leads_key], data[events_key]
    cache = PlanCache(tmp_path / "cache")
    compiled = _bytes(model, leads, events, tmp_path / f"a.{fmt}", fmt)
    first = _bytes(model, leads, events, tmp_path / f"b.{fmt}", fmt, cache=cache)
    assert len(_entries(cache)) == 1
    # the second run compiles nothing: it reads the plan
    monkeypatch.setattr(batch_module, "compile_plan", _no_compiling)
    cached = _bytes(model, leads, events, tmp_path / f"c.{fmt}", fmt, cache=cache)
    assert compiled == first == cached
    assert compiled.count(b"\n") == 200 + (fmt == "csv")
    # and at other instants: the plan's slots take each one, inside and outside the window
    monkeypatch.undo()
    for when in (
        datetime(2026, 3, 7, 12, 30, 15, 250000, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    ):
        fresh = _bytes(model, leads, events, tmp_path / f"d.{fmt}", fmt, as_of=when)
        again = _bytes(model, leads, events, tmp_path / f"e.{fmt}", fmt, as_of=when, cache=cache)
        assert fresh == again
    assert len(_entries(cache)) == 1


def _no_compiling(*args, **kwargs):
    raise AssertionError("compiled although the plan is in the cache")


def test_a_changed_model_never_uses_the_old_entry(data, tmp_path):
    cache = PlanCache(tmp_path / "cache")
    model = tmp_path / "m.yaml"
    model.write_text(STARTER.read_text())
    leads, events = data["leads"], data["events"]
    before = _bytes(model, leads, events, tmp_path / "a.jsonl", "jsonl", cache=cache)
    # the same rules with other points: a plan of its own, and the new points in every record
    model.write_text(STARTER.read_text().replace("points: 15", "points: 16", 1))
    changed = _bytes(model, leads, events, tmp_path / "b.jsonl", "jsonl", cache=cache)
    fresh = _bytes(model, leads, events, tmp_path / "c.jsonl", "jsonl")
    assert changed == fresh != before
    assert len(_entries(cache)) == 2
    # and other input columns (JSON Lines leads keep their traits in one JSON column)
    other = _bytes(model, data["jsonl_leads"], events, tmp_path / "d.jsonl", "jsonl", cache=cache)
    assert other == _bytes(model, data["jsonl_leads"], events, tmp_path / "e.jsonl", "jsonl")
    assert len(_entries(cache)) == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "{not json",
        lambda text: text[: len(text) // 2],
        lambda text: "",
        lambda text: json.dumps({**json.loads(text), "key": "0" * 64}),
        # a plan edited after it was written: its digest no longer matches
        lambda text: text.replace("leadscore_g", "leadscore_h", 1),
        lambda text: json.dumps(
            {**json.loads(text), "plan": {**json.loads(text)["plan"], "format": 0}}
        ),
        lambda text: json.dumps([1, 2, 3]),
    ],
)
def test_a_damaged_entry_is_ignored_and_written_again(data, tmp_path, damage):
    cache = PlanCache(tmp_path / "cache")
    leads, events = data["leads"], data["events"]
    good = _bytes(STARTER, leads, events, tmp_path / "a.csv", "csv", cache=cache)
    (entry,) = _entries(cache)
    sound = entry.read_text()
    entry.write_text(damage(sound))
    assert _bytes(STARTER, leads, events, tmp_path / "b.csv", "csv", cache=cache) == good
    assert entry.read_text() == sound  # written again, whole


def test_an_entry_another_user_wrote_is_not_run(data, tmp_path, monkeypatch):
    """An entry is SQL the run executes: in a cache directory others can write to, an entry
    owned by another user (here: the entry as seen by another user id) is ignored."""
    cache = PlanCache(tmp_path / "cache")
    leads, events = data["leads"], data["events"]
    good = _bytes(STARTER, leads, events, tmp_path / "a.csv", "csv", cache=cache)
    (entry,) = _entries(cache)
    owner = entry.stat().st_uid
    monkeypatch.setattr(batch_module, "compile_plan", _no_compiling)
    assert _bytes(STARTER, leads, events, tmp_path / "b.csv", "csv", cache=cache) == good
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)
    with pytest.raises(AssertionError, match="compiled although"):
        _bytes(STARTER, leads, events, tmp_path / "c.csv", "csv", cache=cache)


def test_a_stored_plan_reads_back_as_written(data):
    model = load_model(STARTER)
    b = run(model, data["leads"], data["events"], AS_OF)
    assert b.plan is not None
    assert ScorePlan.from_json(json.loads(json.dumps(b.plan.to_json()))) == b.plan
    with pytest.raises(ValueError):
        ScorePlan.from_json({**b.plan.to_json(), "final": 3})


def test_an_unwritable_cache_only_costs_the_compiling(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = PlanCache(blocker / "plans")
    leads, events = data["leads"], data["events"]
    assert _bytes(STARTER, leads, events, tmp_path / "a.csv", "csv", cache=cache) == _bytes(
        STARTER, leads, events, tmp_path / "b.csv", "csv"
    )


def test_where_the_cache_is_and_how_to_turn_it_off(monkeypatch, tmp_path):
    monkeypatch.delenv("LEADSCORE_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = default_cache()
    assert cache is not None and cache.directory == tmp_path / "leadscore" / "plans"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as XDG says
    cache = default_cache()
    assert cache is not None and cache.directory == Path.home() / ".cache" / "leadscore" / "plans"
    monkeypatch.setenv("LEADSCORE_NO_CACHE", "1")
    assert default_cache() is None


def test_a_user_without_a_home_directory_runs_without_the_cache(monkeypatch):
    # HOME unset and a user id with no passwd entry (a container run as --user 1234)
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.delenv("LEADSCORE_NO_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert default_cache() is None


def test_a_quiet_run_from_the_cache_does_not_import_sqlglot(data, tmp_path):
    out = tmp_path / "scores.csv"
    code = (
        "import sys\n"
        "from leadscore.launch import quick_score, quick_score_args\n"
        "quick_score(quick_score_args(sys.argv[1:]))\n"
        "print('sqlglot' in sys.modules)\n"
    )
    args = ["score", str(STARTER), "--leads", str(data["leads"]), "--events", str(data["events"])]
    args += ["--as-of", "2026-06-01", "-f", "csv", "-o", str(out), "-q"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("LEADSCORE_NO_CACHE", None)
    seen = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        seen.append((proc.stdout.strip(), out.read_bytes()))
    assert [s for s, _ in seen] == ["True", "False"]  # compiled, then read from the cache
    assert seen[0][1] == seen[1][1]


def test_text_that_looks_like_a_slot_is_only_text(tmp_path):
    mark = slot("us")
    quoted = "'" + mark.replace("'", "''") + "'"  # YAML's single quotes: ' written twice
    model = parse_model(
        f"""
model: 1
name: slots
fit:
  rules:
    - name: 'Rule {mark.replace("'", "''")}'
      when: {{field: note, equals: {quoted}}}
      points: 10
engagement:
  rules:
    - {{name: Visit, event: {quoted}, points: 5}}
mql: {{threshold: 10}}
""",
        "slots.yaml",
    )
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        json.dumps({"lead_id": "a", "note": mark})
        + "\n"
        + json.dumps({"lead_id": "b", "note": "other"})
        + "\n"
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"lead_id": "a", "event": mark, "timestamp": "2026-05-30T00:00:00Z"}) + "\n"
    )
    cache = PlanCache(tmp_path / "cache")
    for _ in range(2):
        b = run(model, leads, events, AS_OF, cache=cache)
        got = {r["lead_id"]: r for r in map(json.loads, b.jsonl_lines())}
        assert got["a"]["fit"] == 10 and got["a"]["engagement"] == 5
        assert got["a"]["reasons"][0]["rule"] == f"Rule {mark}"
        assert got["b"]["score"] == 0


WHITESPACE_MODEL = """
model: 1
name: spaces
fit:
  rules:
  - name: Industry
    when: {field: industry, equals: software}
    points: 1
  - name: Region
    when: {field: region, in: [emea, apac]}
    points: 2
  - name: Starts
    when: {field: title, starts_with: vp}
    points: 4
  - name: Ends
    when: {field: email, ends_with: "@gmail.com"}
    points: 8
  - name: Has
    when: {field: title, contains: "ales"}
    points: 16
  - name: Size
    when: {field: size, gt: 100}
    points: 32
  - name: Known
    when: {field: note, exists: true}
    points: 64
  - name: Pattern
    when: {field: email, matches: "^x.*z$"}
    points: 128
mql: {threshold: 100}
"""


def test_traits_with_white_space_at_either_end_read_as_the_python_engine_reads_them(tmp_path):
    model = parse_model(WHITESPACE_MODEL, "spaces.yaml")
    blanks = [" ", "\t", "\n", "\r", "\f", "\v", " \t", "\u00a0", ""]
    rows = []
    for i, (a, b) in enumerate((a, b) for a in blanks for b in blanks):
        rows.append(
            {
                "lead_id": f"L{i:03d}",
                "industry": f"{a}Software{b}",
                "region": f"{a}EMEA{b}" if i % 2 else f"{a}apac{b}",
                "title": f"{a}VP Sales{b}" if i % 3 else f"{b}vp{a}",
                "email": f"{a}Xo@GMAIL.com{b}" if i % 2 else f"{a}x@y.z{b}",
                "size": f"{a}250{b}" if i % 2 else f"{a}1e2{b}",
                "note": f"{a}{b}" if i % 4 else f"{a}n{b}",
            }
        )
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM read_json(?, format='array')", [_json(tmp_path, rows)]
    )
    leads = tmp_path / "leads.parquet"
    con.execute(f"COPY t TO '{leads}' (FORMAT PARQUET)")
    got = {r["lead_id"]: r for r in map(json.loads, run(model, leads, None, AS_OF).jsonl_lines())}
    scorer = Scorer(model)
    for row in rows:
        traits = {k: v for k, v in row.items() if k != "lead_id"}
        want = scorer.score(traits, [], AS_OF).record(row["lead_id"])
        assert got[row["lead_id"]]["fit"] == want["fit"], row
        assert got[row["lead_id"]]["reasons"] == want["reasons"], row


def _json(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_event_names_are_counted_only_for_rules_that_fired_for_no_lead(data, tmp_path):
    from leadscore.batch import data_warnings

    model = load_model(STARTER)
    b = run(model, data["leads"], data["events"], AS_OF, count_orphans=False)
    assert data_warnings(model, b.inputs, AS_OF, None, b) == []
    assert b.inputs.event_names is None  # every event rule fired: no scan of the names
    # a misspelt name fires for no lead: the names are counted, and the closest one suggested
    text = STARTER.read_text().replace("event: Webinar Attended", "event: Webinar Atended")
    (tmp_path / "m.yaml").write_text(text)
    model = load_model(tmp_path / "m.yaml")
    b = run(model, data["leads"], data["events"], AS_OF, count_orphans=False)
    warnings = data_warnings(model, b.inputs, AS_OF, None, b)
    assert b.inputs.event_names is not None
    assert len(warnings) == 1 and "counts 'Webinar Atended' events, and no event has" in warnings[0]
    assert "did you mean 'Webinar Attended'?" in warnings[0]


def test_an_installation_without_its_source_caches_nothing(data, tmp_path, monkeypatch):
    from leadscore.sql import cache as cache_module

    monkeypatch.setattr(cache_module, "_CODE", ("no-such-module.py",))
    cache = PlanCache(tmp_path / "cache")
    leads, events = data["leads"], data["events"]
    got = _bytes(STARTER, leads, events, tmp_path / "a.csv", "csv", cache=cache)
    assert got == _bytes(STARTER, leads, events, tmp_path / "b.csv", "csv")
    assert not cache.directory.exists()
