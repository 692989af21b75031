"""Files as CRMs export them: the id and event columns named their own way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from leadscore.batch import explain_lead, run
from leadscore.demo import generate
from leadscore.errors import ConfigError, InputError
from leadscore.io import Columns, open_inputs, parse_event_columns
from leadscore.model import load_model

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
CRM = Columns(
    lead_id="Prospect ID",
    events={"lead_id": "Lead", "event": "Activity", "timestamp": "At", "properties": "Details"},
)
EVENT_RENAMES = {
    "lead_id": "Lead",
    "event": "Activity",
    "timestamp": "At",
    "properties": "Details",
}


def _records(batch) -> dict[str, dict]:
    return {r["lead_id"]: r for r in map(json.loads, batch.jsonl_lines())}


def _rename(src: Path, dst: Path, renames: dict[str, str], extra: str = "") -> Path:
    """The file ``src`` written again as ``dst`` (its format from the name) with columns renamed."""
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    suffix = src.suffix
    reader = {
        ".csv": f"read_csv('{src}', all_varchar=true)",
        ".jsonl": f"read_json('{src}', format='newline_delimited')",
        ".parquet": f"read_parquet('{src}')",
    }[suffix]
    cols = [d[0] for d in con.execute(f"SELECT * FROM {reader} LIMIT 0").description]
    select = ", ".join(f'"{c}" AS "{renames.get(c, c)}"' for c in cols)
    fmt = {".csv": "FORMAT CSV, HEADER", ".jsonl": "FORMAT JSON", ".parquet": "FORMAT PARQUET"}[
        dst.suffix
    ]
    con.execute(f"COPY (SELECT {select}{extra} FROM {reader}) TO '{dst}' ({fmt})")
    return dst


@pytest.mark.parametrize(
    ("leads_format", "events_format"),
    [("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet")],
)
def test_renamed_columns_score_as_the_canonical_names(tmp_path, leads_format, events_format):
    files = generate(
        tmp_path / "plain", 80, seed=5, leads_format=leads_format, events_format=events_format
    )
    model = load_model(STARTER)
    expected = _records(run(model, files.leads, files.events, AS_OF))
    leads = _rename(files.leads, tmp_path / f"crm{files.leads.suffix}", {"lead_id": "Prospect ID"})
    events = _rename(files.events, tmp_path / f"crm-events{files.events.suffix}", EVENT_RENAMES)
    got = _records(run(model, leads, events, AS_OF, columns=CRM))
    assert got == expected
    some = next(iter(expected))
    inputs = open_inputs(leads, events, columns=CRM)
    assert explain_lead(model, inputs, some, AS_OF).score.record(some) == expected[some]


def test_a_missing_id_column_suggests_the_option(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("Prospect ID,Lead Origin\nP1,API\n")
    with pytest.raises(InputError) as e:
        open_inputs(leads)
    assert "did you mean 'Prospect ID'? Pass --id-column 'Prospect ID'" in str(e.value)
    events = tmp_path / "events.csv"
    events.write_text("Lead,Activity,timestamp\nP1,page,2026-05-01\n")
    with pytest.raises(InputError) as e2:
        open_inputs(leads, events, columns=Columns(lead_id="Prospect ID"))
    assert "events need a 'lead_id' column" in str(e2.value)
    assert "Pass --event-columns lead_id=Lead" in str(e2.value)
    with pytest.raises(InputError, match="leads need a 'Prospect' column"):
        open_inputs(leads, columns=Columns(lead_id="Prospect"))


def test_an_empty_mapped_id_is_a_bad_row_named_by_its_column(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("Prospect ID,title\nP1,VP\n,CEO\n")
    inputs = open_inputs(leads, columns=Columns(lead_id="Prospect ID"), skip_bad_rows=True)
    assert inputs.leads == 1 and inputs.skipped == {str(leads): 1}


def test_parse_event_columns():
    assert parse_event_columns("lead_id=Lead, event=Activity,timestamp=Created On") == {
        "lead_id": "Lead",
        "event": "Activity",
        "timestamp": "Created On",
    }
    assert parse_event_columns(None) == {}
    with pytest.raises(ConfigError, match="did you mean 'event'"):
        parse_event_columns("evnt=Activity")
    with pytest.raises(ConfigError, match="is not NAME=COLUMN"):
        parse_event_columns("Activity")


def test_cli_score_explain_and_backtest_take_the_mapping(tmp_path):
    files = generate(tmp_path / "plain", 60, seed=8, events_format="csv")
    leads = _rename(
        files.leads,
        tmp_path / "crm.csv",
        {"lead_id": "Prospect ID"},
        ", CASE WHEN hash(lead_id) % 3 = 0 THEN 1 ELSE 0 END AS Converted",
    )
    events = _rename(files.events, tmp_path / "crm-events.csv", EVENT_RENAMES)
    common = [
        str(STARTER),
        "--as-of",
        "2026-06-01",
        "--id-column",
        "Prospect ID",
        "--event-columns",
        "lead_id=Lead,event=Activity,timestamp=At,properties=Details",
    ]
    env = {**os.environ, "COLUMNS": "200"}

    def ls(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "leadscore", *args], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    plain = ls(
        "score",
        str(STARTER),
        "--as-of",
        "2026-06-01",
        "--leads",
        str(files.leads),
        "--events",
        str(files.events),
        "-q",
    )
    crm = ls("score", *common, "--leads", str(leads), "--events", str(events), "-q")
    assert crm.stdout == plain.stdout and crm.stdout.count("\n") == 60
    lead = json.loads(plain.stdout.splitlines()[0])["lead_id"]
    ex = ls("explain", *common, "--leads", str(leads), "--events", str(events), "--lead", lead)
    assert lead in ex.stdout
    bt = ls(
        "backtest",
        *common,
        "--leads",
        str(leads),
        "--events",
        str(events),
        "--outcome-column",
        "Converted",
        "--format",
        "json",
    )
    report = json.loads(bt.stdout)
    assert report["outcomes"]["kept"] == 60 and report["outcomes"]["unknown_leads"] == 0
