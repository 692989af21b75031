"""The worked example of docs/funnel.md: Olist's marketing funnel (8,000 MQLs, 842 closed deals)
converted by docs/examples/olist_funnel.py, imported and reported, on SQLite and PostgreSQL.
Skipped, with the reason, when the shared data sets are not beside the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leadscore.service.facade import Service
from leadscore.store import open_engine

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "examples" / "olist_funnel.py"


def test_olist_funnel(shared_data: Path, service_db_url: str, tmp_path: Path) -> None:
    olist = shared_data / "olist"
    if not olist.is_dir():
        pytest.skip(f"the Olist data set is not in {olist}")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(olist), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    engine = open_engine(service_db_url)
    try:
        service = Service(engine)
        r = service.import_history(leads=tmp_path / "leads.csv", stages=tmp_path / "stages.csv")
        # one deal is dated before its lead's first contact: kept in history, in no episode
        assert (r.leads_added, r.stage_rows_added, r.episodes, r.outside_episodes) == (
            8000,
            8842,
            8000,
            1,
        )
        total = service.funnel()["total"]
        assert total["mqls"] == 8000
        assert total["outcome"] == {"customer": 841, "disqualified": 0, "recycled": 0, "open": 7159}
        assert total["conversion"]["mql_to_sql"] == pytest.approx(0.105125)
        assert total["mql_to_sql_note"] == "below the usual 20%–60% band (7159 still open)"
        close = total["times"]["close"]
        assert close["n"] == 841
        assert close["median_s"] / 86400 == pytest.approx(14.72, abs=0.01)
        by_source = {g["key"]: g for g in service.funnel(by="source")["groups"]}
        assert by_source["organic_search"]["mqls"] == 2296
        assert by_source["organic_search"]["reached"]["customer"] == 270
        assert by_source["(none)"]["mqls"] == 60  # Olist gives no origin for 60 leads
        pages = service.funnel(by="campaign")["groups"]
        assert sum(g["mqls"] for g in pages) == 8000 and len(pages) > 400
        sdrs = service.funnel(by="owner")["groups"]
        assert sum(g["reached"]["customer"] for g in sdrs if g["key"] != "(none)") == 841
        assert len([g for g in sdrs if g["key"] != "(none)"]) == 32
        # the cohort of 2018's first quarter only
        q1 = service.funnel(start_us=1_514_764_800_000_000, end_us=1_522_540_800_000_000)["total"]
        assert 0 < q1["mqls"] < 8000
    finally:
        engine.dispose()
