"""Reading leads and events files: every format gives the scores the Python engine gives."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadscore.batch import load_lead, run
from leadscore.demo import generate
from leadscore.engine import Event, Scorer
from leadscore.errors import BadRowsError, ConfigError, InputError
from leadscore.io import open_inputs
from leadscore.model import load_model, nest, parse_model

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def _records(batch) -> dict[str, dict]:
    return {r["lead_id"]: r for r in map(json.loads, batch.jsonl_lines())}


def _python_scores(model, leads_csv: Path, events_jsonl: Path) -> dict[str, dict]:
    """The reference: files parsed by the standard library, scored by the Python engine."""
    with leads_csv.open(newline="", encoding="utf-8") as f:
        leads = {
            row["lead_id"]: nest({k: (v if v != "" else None) for k, v in row.items()})
            for row in csv.DictReader(f)
        }
    events: dict[str, list[Event]] = {}
    with events_jsonl.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            ts = datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00"))
            events.setdefault(d["lead_id"], []).append(Event(d["event"], ts, d["properties"]))
    scorer = Scorer(model)
    return {
        lid: scorer.score(t, events.get(lid, []), AS_OF).record(lid) for lid, t in leads.items()
    }


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("demo")
    out: dict[str, Path] = {}
    for fmt in ("csv", "jsonl", "parquet"):
        files = generate(base / fmt, 300, seed=7, leads_format=fmt, events_format=fmt)
        out[f"leads.{fmt}"] = files.leads
        out[f"events.{fmt}"] = files.events
    return out


@pytest.mark.parametrize("leads_fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("events_fmt", ["csv", "jsonl", "parquet"])
def test_every_format_scores_like_the_python_engine(demo_files, leads_fmt, events_fmt):
    model = load_model(STARTER)
    expected = _python_scores(model, demo_files["leads.csv"], demo_files["events.jsonl"])
    batch = run(model, demo_files[f"leads.{leads_fmt}"], demo_files[f"events.{events_fmt}"], AS_OF)
    got = _records(batch)
    assert set(got) == set(expected) and len(got) == 300
    for lid, exp in expected.items():
        g = got[lid]
        assert list(g) == [
            "lead_id",
            "fit",
            "engagement",
            "score",
            "grade",
            "mql",
            "fast_track",
            "reasons",
        ]
        for k in ("fit", "engagement", "score"):
            assert g[k] == pytest.approx(exp[k], abs=1e-6), (lid, k)
        assert (g["grade"], g["mql"], g["fast_track"]) == (
            exp["grade"],
            exp["mql"],
            exp["fast_track"],
        ), lid
        assert g["reasons"] == exp["reasons"], lid
    # the demo data is realistic enough that every decision occurs
    assert {r["mql"] for r in got.values()} == {True, False}
    assert any(r["fast_track"] for r in got.values())


def test_explain_loads_the_lead_the_batch_scored(demo_files):
    model = load_model(STARTER)
    batch = run(model, demo_files["leads.parquet"], demo_files["events.parquet"], AS_OF)
    rec = _records(batch)["L-000042"]
    traits, events = load_lead(batch.inputs, "L-000042")
    assert traits["company"]["name"] and events
    assert Scorer(model).score(traits, events, AS_OF).record("L-000042") == rec


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MODEL = parse_model(
    """
model: 1
name: t
fit:
  rules:
    - name: Big
      when: {field: company.employees, gte: 100}
      points: 10
engagement:
  rules:
    - name: Pricing
      event: page
      when: {field: path, starts_with: /pricing}
      points: 5
mql: {threshold: 10}
"""
)


def test_bad_rows_are_named_with_file_and_line_and_stop_the_run(tmp_path):
    leads = _write(
        tmp_path / "leads.csv", "lead_id,company.employees\nA,500\n,20\nA,7\nB,1,extra\nC,n/a\n"
    )
    with pytest.raises(BadRowsError) as e:
        open_inputs(leads)
    msg = str(e.value)
    assert "3 rows cannot be read" in msg
    assert f"{leads}:3: no lead_id" in msg
    assert f"{leads}:4: lead_id A appears again (first on line 2)" in msg
    assert f"{leads}:5: malformed CSV row" in msg
    assert "--skip-bad-rows" in msg


def test_skip_bad_rows_scores_the_rest_and_counts(tmp_path):
    leads = _write(tmp_path / "leads.csv", "lead_id,company.employees\nA,500\n,20\nA,7\nC,n/a\n")
    events = _write(
        tmp_path / "events.jsonl",
        "\n".join(
            [
                '{"lead_id": "A", "event": "page", "timestamp": "2026-05-31T00:00:00Z", "properties": {"path": "/pricing"}}',
                "{not json",
                '{"lead_id": "A", "event": "page", "timestamp": "last tuesday", "properties": {}}',
                '{"lead_id": "Z", "event": "page", "timestamp": "2026-05-31", "properties": {"path": "/pricing"}}',
                '{"lead_id": "A", "timestamp": "2026-05-31"}',
                "",
            ]
        ),
    )
    with pytest.raises(BadRowsError) as e:
        open_inputs(leads, events, skip_bad_rows=False)
    assert "last tuesday" not in str(e.value) or f"{leads}" in str(e.value)
    batch = run(MODEL, leads, events, AS_OF, skip_bad_rows=True)
    got = _records(batch)
    assert set(got) == {"A", "C"}
    assert got["A"]["score"] == pytest.approx(10 + 5)  # the first row of A wins; one pricing view
    assert got["C"]["fit"] == 0  # "n/a" is not a number
    assert batch.inputs.skipped == {str(leads): 2, str(events): 3}
    assert (batch.inputs.orphan_events, batch.inputs.orphan_lead_ids) == (1, 1)
    assert batch.inputs.events == 1


def test_event_errors_name_the_line_and_the_problem(tmp_path):
    leads = _write(tmp_path / "leads.csv", "lead_id\nA\n")
    events = _write(
        tmp_path / "events.csv",
        "lead_id,event,timestamp,properties\n"
        'A,page,2026-05-01,"{""path"": ""/pricing""}"\n'
        "A,page,yesterday,{}\n"
        "A,,2026-05-01,{}\n"
        "A,page,2026-05-01,{oops\n",
    )
    with pytest.raises(BadRowsError) as e:
        open_inputs(leads, events)
    msg = str(e.value)
    assert f'{events}:3: timestamp "yesterday" is not an ISO 8601 timestamp' in msg
    assert f"{events}:4: no event name" in msg
    assert f"{events}:5: properties is not valid JSON" in msg


@pytest.mark.parametrize(
    ("content", "name", "needle"),
    [
        ("", "leads.csv", "the file is empty"),
        ("id,title\n1,x\n", "leads.csv", "leads need a 'lead_id' column (found: id, title)"),
        ("Lead ID,title\n1,x\n", "leads.csv", "did you mean 'Lead ID'?"),
        ("lead_id\n", "leads.csv", "has no leads"),
        ("lead_id\nA\n", "leads.xlsx", "cannot tell the format"),
    ],
)
def test_files_that_cannot_be_read_at_all(tmp_path, content, name, needle):
    path = _write(tmp_path / name, content)
    with pytest.raises(InputError) as e:
        open_inputs(path)
    assert needle in str(e.value)
    assert str(path) in str(e.value)


def test_missing_event_columns_and_files(tmp_path):
    leads = _write(tmp_path / "leads.csv", "lead_id\nA\n")
    events = _write(tmp_path / "events.csv", "lead_id,name,timestamp\nA,page,2026-05-01\n")
    with pytest.raises(InputError, match="events need a 'event' column"):
        open_inputs(leads, events)
    with pytest.raises(InputError, match="no such file"):
        open_inputs(tmp_path / "nope.csv")
    with pytest.raises(ConfigError):
        open_inputs(leads, segment=events)


def test_segment_messages(tmp_path):
    msgs = [
        {
            "type": "page",
            "anonymousId": "anon-1",
            "name": "Pricing",
            "properties": {"path": "/pricing"},
            "timestamp": "2026-05-30T10:00:00Z",
        },
        {
            "type": "page",
            "anonymousId": "anon-9",
            "properties": {"path": "/pricing"},
            "timestamp": "2026-05-30T10:00:00Z",
        },
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "anon-1",
            "traits": {"email": "a@b.co", "title": "CTO"},
            "timestamp": "2026-05-30T11:00:00Z",
        },
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"title": "VP Sales"},
            "timestamp": "2026-05-31T11:00:00Z",
        },
        {
            "type": "group",
            "userId": "u1",
            "groupId": "g-7",
            "traits": {"name": "Acme", "employees": 250},
            "timestamp": "2026-05-30T12:00:00Z",
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Demo Requested",
            "properties": {},
            "timestamp": "2026-05-31T12:00:00Z",
        },
        {
            "type": "track",
            "userId": "u2",
            "event": "Email Opened",
            "properties": {},
            "timestamp": "2026-05-31T12:00:00Z",
        },
        {
            "type": "alias",
            "userId": "u2",
            "previousId": "anon-2",
            "timestamp": "2026-05-31T12:00:00Z",
        },
        {
            "type": "page",
            "anonymousId": "anon-2",
            "properties": {"path": "/pricing/enterprise"},
            "timestamp": "2026-05-31T09:00:00Z",
        },
    ]
    path = _write(tmp_path / "segment.jsonl", "\n".join(json.dumps(m) for m in msgs) + "\n")
    model = parse_model(
        """
model: 1
name: seg
fit:
  rules:
    - {name: ICP size, when: {field: company.employees, gte: 200}, points: 20}
    - {name: VP, when: {field: title, matches: "^vp"}, points: 10}
engagement:
  rules:
    - {name: Pricing, event: page, when: {field: path, starts_with: /pricing}, points: 5}
    - {name: Demo, event: Demo Requested, points: 40, fast_track: true}
mql: {threshold: 50}
"""
    )
    batch = run(model, None, None, AS_OF, segment=path)
    got = _records(batch)
    assert set(got) == {"u1", "u2"}
    # identify traits merge in time order (VP Sales wins), group traits are company traits,
    # and the anonymous pricing view joins u1 through the identify call that links them
    assert got["u1"]["fit"] == 30
    assert got["u1"]["engagement"] == 45
    assert got["u1"]["mql"] and got["u1"]["fast_track"]
    assert got["u2"]["engagement"] == 5  # anon-2 joined u2 by alias
    assert batch.inputs.anonymous_events == 1  # anon-9 is never identified
    traits, _ = load_lead(batch.inputs, "u1")
    assert traits["company"] == {"name": "Acme", "employees": 250, "id": "g-7"}


def test_segment_bad_messages(tmp_path):
    path = _write(
        tmp_path / "segment.jsonl",
        '{"type": "track", "userId": "u1", "event": "X", "timestamp": "2026-05-31"}\n'
        '{"type": "purchase", "userId": "u1"}\n'
        '{"type": "track", "event": "X"}\n'
        '{"type": "track", "userId": "u1"}\n',
    )
    with pytest.raises(BadRowsError) as e:
        open_inputs(None, segment=path)
    msg = str(e.value)
    assert f"{path}:2: type 'purchase' is not one of" in msg
    assert f"{path}:3: the message has neither userId nor anonymousId" in msg
    assert f"{path}:4: a track call needs an event name" in msg
