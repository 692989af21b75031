"""Batch scoring reads the events once: times with a time zone, and the check of every row in
the scoring scan, give the records and the errors of the separate check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from leadscore.batch import load_lead, run
from leadscore.demo import generate
from leadscore.errors import BadRowsError
from leadscore.model import load_model, parse_model

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

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
  half_life_days: 30
  rules:
    - name: Pricing
      event: page
      when: {field: path, starts_with: /pricing}
      points: 5
    - name: Demo
      event: Demo Requested
      points: 40
      fast_track: true
mql: {threshold: 10}
"""
)

FIT_ONLY = parse_model(
    """
model: 1
name: fit only
fit:
  rules:
    - name: Big
      when: {field: company.employees, gte: 100}
      points: 10
mql: {threshold: 10}
"""
)


def _lines(batch) -> list[str]:
    return list(batch.jsonl_lines())


def _events_parquet(path: Path, rows: list[tuple[str | None, str | None, str | None, str]]) -> Path:
    """Events as Parquet with ``timestamp`` a TIMESTAMP WITH TIME ZONE (text with an offset)."""
    con = duckdb.connect()
    con.execute("SET TimeZone='America/New_York'")  # the writer's zone must not matter
    con.execute(
        "CREATE TABLE e (lead_id VARCHAR, event VARCHAR, timestamp TIMESTAMPTZ, "
        "properties STRUCT(path VARCHAR))"
    )
    for lead, event, ts, page in rows:
        con.execute(
            "INSERT INTO e VALUES (?, ?, CAST(? AS TIMESTAMPTZ), {'path': ?})",
            [lead, event, ts, page],
        )
    con.execute(f"COPY e TO '{path}' (FORMAT PARQUET)")
    return path


def _leads(path: Path) -> Path:
    path.write_text("lead_id,company.employees\nA,500\nB,20\n", encoding="utf-8")
    return path


def test_timestamptz_events_score_like_the_same_instants_without_a_zone(tmp_path):
    model = load_model(STARTER)
    aware = generate(tmp_path / "aware", 300, seed=3, leads_format="parquet", timestamptz=True)
    naive = generate(tmp_path / "naive", 300, seed=3, leads_format="parquet")
    got = _lines(run(model, aware.leads, aware.events, AS_OF))
    want = _lines(run(model, naive.leads, naive.events, AS_OF))
    assert len(got) == 300 and got == want
    assert any(json.loads(line)["engagement"] > 0 for line in got)


def test_offsets_are_instants(tmp_path):
    """10:00 at +02:00 is 08:00 UTC: the decay of an event at 08:00Z exactly."""
    leads = _leads(tmp_path / "leads.csv")
    shifted = _events_parquet(
        tmp_path / "shifted.parquet",
        [("A", "page", "2026-05-31 10:00:00.123456+02", "/pricing")],
    )
    utc = _events_parquet(
        tmp_path / "utc.parquet", [("A", "page", "2026-05-31 08:00:00.123456+00", "/pricing")]
    )
    a = _lines(run(MODEL, leads, shifted, AS_OF))
    b = _lines(run(MODEL, leads, utc, AS_OF))
    assert a == b
    assert json.loads(a[0])["engagement"] == pytest.approx(
        5 * 0.5 ** ((16 * 3600 - 0.123456) / (30 * 86400)), abs=0.006
    )


def test_bad_rows_of_a_timestamptz_file_stop_the_batch_with_their_lines(tmp_path):
    leads = _leads(tmp_path / "leads.csv")
    events = _events_parquet(
        tmp_path / "events.parquet",
        [
            ("A", "page", "2026-05-30 00:00:00+00", "/pricing"),
            ("A", "page", None, "/pricing"),
            ("", "page", "2026-05-30 00:00:00+00", "/pricing"),
            ("B", "Demo Requested", "2026-05-29 12:00:00+00", None),
        ],
    )
    with pytest.raises(BadRowsError) as e:
        run(MODEL, leads, events, AS_OF)
    msg = str(e.value)
    assert "2 rows cannot be read" in msg
    assert f"{events}:2: no timestamp" in msg  # the second row
    assert f"{events}:3: no lead_id" in msg


def test_skipped_bad_rows_score_nothing_and_are_counted(tmp_path):
    leads = _leads(tmp_path / "leads.csv")
    good = [
        ("A", "page", "2026-05-30 00:00:00+00", "/pricing"),
        ("B", "Demo Requested", "2026-05-29 12:00:00+00", None),
        ("Z", "page", "2026-05-30 00:00:00+00", "/pricing"),  # not a lead: not scored
        ("A", "page", "2025-01-01 00:00:00+00", "/pricing"),  # outside the window
    ]
    bad = [
        ("A", "page", None, "/pricing"),
        ("", "Demo Requested", "2026-05-30 00:00:00+00", None),
        ("B", None, "2026-05-30 00:00:00+00", None),
        (None, "page", "2026-05-30 00:00:00+00", "/pricing"),
    ]
    clean = run(MODEL, leads, _events_parquet(tmp_path / "clean.parquet", good), AS_OF)
    events = _events_parquet(tmp_path / "mixed.parquet", bad[:2] + good + bad[2:])
    batch = run(MODEL, leads, events, AS_OF, skip_bad_rows=True)
    assert _lines(batch) == _lines(clean)
    assert batch.inputs.skipped == {str(events): 4}
    assert (batch.inputs.orphan_lead_ids, batch.inputs.orphan_events) == (1, 1)
    assert batch.inputs.events == clean.inputs.events == 3
    assert batch.inputs.events_check is None
    # after the check, the events view holds the good rows only, as explain reads them
    _, a_events = load_lead(batch.inputs, "A")
    assert [e.timestamp.year for e in a_events] == [2025, 2026]
    records = {json.loads(line)["lead_id"]: json.loads(line) for line in _lines(batch)}
    assert records["B"]["fast_track"] is True and records["B"]["mql"] is True


def test_a_model_without_engagement_rules_still_checks_the_events(tmp_path):
    leads = _leads(tmp_path / "leads.csv")
    events = _events_parquet(
        tmp_path / "events.parquet",
        [("A", "page", None, "/pricing"), ("B", "page", "2026-05-30 00:00:00+00", "/")],
    )
    with pytest.raises(BadRowsError) as e:
        run(FIT_ONLY, leads, events, AS_OF)
    assert f"{events}:1: no timestamp" in str(e.value)
    batch = run(FIT_ONLY, leads, events, AS_OF, skip_bad_rows=True)
    assert [json.loads(line)["fit"] for line in _lines(batch)] == [10.0, 0.0]
    assert batch.inputs.skipped == {str(events): 1} and batch.inputs.events == 1
