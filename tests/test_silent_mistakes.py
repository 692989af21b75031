"""Mistakes that used to fail silently: misspelt fields and events, rules that never fire, bad
CSV rows counted several times, files that are not what their name says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leadscore.demo import generate
from leadscore.errors import BadRowsError, InputError
from leadscore.io import open_inputs
from tests.cli_helpers import STARTER, ls


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("data")
    files = generate(d, 150, seed=4)
    text = STARTER.read_text()
    text = text.replace("field: company.employees", "field: company.employes", 1)
    text = text.replace("event: Demo Requested", "event: Demo Requestd")
    text = text.replace("field: path", "field: pth", 1)
    typo = d / "typo.yaml"
    typo.write_text(text)
    return typo, files.leads, files.events


EXPECTED = [
    "reads 'company.employes', which no lead has; did you mean 'company.employees'?",
    "counts 'Demo Requestd' events, and no event has that name; did you mean 'Demo Requested'?",
    "reads property 'pth' of 'page' events, which none has; did you mean 'path'?",
]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning: ")]


def test_validate_with_data_warns_with_did_you_mean(data):
    typo, leads, events = data
    args = ["validate", str(typo), "--leads", str(leads), "--events", str(events)]
    proc = ls(*args, "--as-of", "2026-06-01")
    warnings = _warnings(proc.stderr)
    for needle in EXPECTED:
        assert any(needle in w for w in warnings), (needle, warnings)
    assert all(w.startswith(f"Warning: {typo}:") for w in warnings)
    lines = [int(w.split(":")[2]) for w in warnings]
    assert lines == sorted(lines)
    strict = ls(*args, "--as-of", "2026-06-01", "--strict", ok=False)
    assert strict.returncode == 1
    clean = ls(
        "validate",
        str(STARTER),
        "--leads",
        str(leads),
        "--events",
        str(events),
        "--as-of",
        "2026-06-01",
        "--strict",
    )
    assert _warnings(clean.stderr) == []


def test_score_warns_too_and_names_rules_that_fired_for_no_lead(data, tmp_path):
    typo, leads, events = data
    model = tmp_path / "never.yaml"
    model.write_text(_with_rule(STARTER.read_text()))
    proc = ls(
        "score",
        str(typo),
        "--leads",
        str(leads),
        "--events",
        str(events),
        "--as-of",
        "2026-06-01",
        "-q",
    )
    warnings = _warnings(proc.stderr)
    for needle in EXPECTED:
        assert any(needle in w for w in warnings), (needle, warnings)
    assert proc.stdout.count("\n") == 150
    never = ls("score", str(model), "--leads", str(leads), "--as-of", "2026-06-01", "-q")
    assert any(
        "fit rule 'Giant companies' fired for no lead (of 150)" in w
        for w in _warnings(never.stderr)
    ), never.stderr


def _with_rule(text: str) -> str:
    head, tail = text.split("engagement:", 1)
    rule = (
        "    - name: Giant companies\n"
        "      when: {field: company.employees, gt: 100000000}\n"
        "      points: 5\n"
    )
    return head.rstrip("\n") + "\n" + rule + "\nengagement:" + tail


def test_one_bad_csv_row_is_one_error_and_later_lines_are_right(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "lead_id,title,country\nA,VP,US\nB,CEO\nC,x,y,z,w,v\nD,Dir,DE\nD,Dup,DE\n,nobody,FR\n"
    )
    with pytest.raises(BadRowsError) as e:
        open_inputs(leads)
    msg = str(e.value)
    assert "4 rows cannot be read" in msg
    assert f"{leads}:3: malformed CSV row: 2 fields, the header has 3" in msg
    assert msg.count(f"{leads}:4: ") == 1 and "more fields than the header's 3" in msg
    assert f"{leads}:6: lead_id D appears again (first on line 5)" in msg
    assert f"{leads}:7: no lead_id" in msg
    inputs = open_inputs(leads, skip_bad_rows=True)
    assert inputs.leads == 2 and inputs.skipped == {str(leads): 4}


def test_bad_event_csv_rows_are_reported_not_dropped(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id\nA\n")
    events = tmp_path / "events.csv"
    events.write_text(
        "lead_id,event,timestamp\nA,page,2026-05-01\nA,page\nA,page,2026-05-01,x,y\nA,page,soon\n"
    )
    with pytest.raises(BadRowsError) as e:
        open_inputs(leads, events)
    msg = str(e.value)
    assert "3 rows cannot be read" in msg
    assert f"{events}:3: malformed CSV row" in msg and f"{events}:4: malformed CSV row" in msg
    assert f'{events}:5: timestamp "soon"' in msg
    inputs = open_inputs(leads, events, skip_bad_rows=True)
    assert inputs.events == 1 and inputs.skipped == {str(events): 3}


@pytest.mark.parametrize(
    ("content", "name", "needle"),
    [
        (None, "leads.csv", "looks like a Parquet file, not CSV; name it .parquet"),
        (b"PK\x03\x04rest-of-a-workbook", "leads.csv", "looks like an Excel workbook"),
        (b"\x00\x01\x02binary", "leads.jsonl", "looks like a binary file, not JSON Lines"),
        (b"\xff\xfel\x00e\x00", "leads.csv", "is UTF-16 text; save it as UTF-8"),
        (b"lead_id\nA\n", "leads.parquet", "named .parquet but looks like text"),
        (b"lead_id\nA\n", "leads.xlsx", "a spreadsheet must be saved as CSV first"),
    ],
)
def test_files_that_are_not_what_their_name_says(tmp_path, data, content, name, needle):
    path = tmp_path / name
    if content is None:
        shutil.copy(data[2], path)  # the events Parquet file
    else:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        open_inputs(path)
    assert needle in str(e.value) and "sniffing" not in str(e.value)
    assert "--leads-format" not in str(e.value)
