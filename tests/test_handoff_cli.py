"""The sales commands on the service's database, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from leadscore.store import schema as t
from tests.handoff_service_helpers import handoff_api
from tests.service_helpers import LEADSCORE, cli


def _fails(*args: str) -> str:
    proc = subprocess.run(
        [*LEADSCORE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ")
    return proc.stderr


def test_touch_stage_assign_and_reps_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    db = ["--database-url", url]
    with handoff_api(url) as h:
        h.mql("u-1")
        h.mql("u-2")
        # a rep's email in any case is the same rep
        touched = subprocess.run(
            [*LEADSCORE, "touch", "u-1", "--kind", "call", "--by", "Ann@ACME.io", *db],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert touched.returncode == 0, touched.stderr
        assert "by ann@acme.io at" in touched.stderr
        cli("stage", "u-1", "sal", "--by", "ann@acme.io", *db)
        cli(
            "stage",
            "u-1",
            "sql",
            "--by",
            "ann@acme.io",
            "--bant-budget",
            "$40k",
            "--bant-authority",
            "VP Sales",
            "--bant-need",
            "spreadsheets",
            "--bant-timeline",
            "Q3",
            *db,
        )
        cli(
            "assign",
            "u-2",
            "--owner",
            "Lee@Acme.io",
            "--by",
            "ops@acme.io",
            "--reason",
            "holiday",
            *db,
        )
        listed = cli("reps", "--away", "ANN@acme.io", *db)
        assert "ann@acme.io" in listed and "enterprise" in listed
        lead = h.lead("u-1")
        assert lead["stage"] == "sql" and lead["touches"][0]["by"] == "ann@acme.io"
        assert lead["stage_history"][-1]["bant"] == {
            "budget": "$40k",
            "authority": "VP Sales",
            "need": "spreadsheets",
            "timeline": "Q3",
        }
        assert h.lead("u-2")["owner"] == "lee@acme.io"
        assert h.count(t.reps, t.reps.c.away) == 1
        # the server's routing sees the rep away
        assert h.mql("u-3")["owner"] == "raj@acme.io"
        cli("reps", "--back", "ann@acme.io", *db)
        assert h.count(t.reps, t.reps.c.away) == 0

        assert "cannot move from 'sql' to 'mql'" in _fails(
            "stage", "u-1", "mql", "--by", "a@acme.io", *db
        )
        assert "no lead 'ghost'" in _fails(
            "touch", "ghost", "--kind", "call", "--by", "a@acme.io", *db
        )
        assert "fax" in _fails("touch", "u-1", "--kind", "fax", "--by", "a@acme.io", *db)
        assert "no rep" in _fails("reps", "--away", "nobody@acme.io", *db)
        assert "not a date" in _fails(
            "touch", "u-1", "--kind", "call", "--by", "a@acme.io", "--at", "soon", *db
        )


def test_serve_refuses_a_routing_file_with_problems(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text(
        "routing: 1\nname: x\nteams: {a: {members: [a@b.io]}}\n"
        "rules: [{name: r, team: b}]\nfallback: a@b.io\n"
    )
    db = f"sqlite:///{tmp_path / 'leadscore.db'}"
    err = _fails("serve", "--routing", str(bad), "--database-url", db)
    assert f"{bad}:4:25: routing rule 'r' names team 'b'" in err
    assert "no such routing file" in _fails(
        "serve", "--routing", str(tmp_path / "nope.yaml"), "--database-url", db
    )
