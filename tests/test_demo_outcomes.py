"""The demo data set comes with outcomes, so the README's tour can back-test and learn."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from leadscore.demo import generate

AS_OF = "2026-06-01"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("demo")
    generate(d, 3000, seed=7)
    src = Path(__file__).parent.parent / "leadscore" / "templates" / "starter.yaml"
    (d / "leadscore.yaml").write_text(src.read_text())
    return d


def _ls(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_outcomes_are_dated_after_the_demo_instant_and_repeatable(
    demo: Path, tmp_path: Path
) -> None:
    with (demo / "outcomes.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = Counter(r["outcome"] for r in rows)
    assert set(kinds) == {"sql", "won", "disqualified"}
    assert kinds["won"] < kinds["sql"]  # a won deal was an SQL first
    assert all(r["at"] > "2026-06-01T" for r in rows)
    sql = {r["lead_id"] for r in rows if r["outcome"] == "sql"}
    assert {r["lead_id"] for r in rows if r["outcome"] == "won"} <= sql
    assert not sql & {r["lead_id"] for r in rows if r["outcome"] == "disqualified"}
    again = generate(tmp_path, 3000, seed=7)
    assert again.outcomes is not None
    assert again.outcomes.read_bytes() == (demo / "outcomes.csv").read_bytes()
    assert again.n_outcomes == len(rows)


def test_the_starter_model_separates_demo_converters_but_not_perfectly(demo: Path) -> None:
    proc = _ls(
        "backtest",
        str(demo / "leadscore.yaml"),
        "--leads",
        str(demo / "leads.csv"),
        "--events",
        str(demo / "events.parquet"),
        "--outcomes",
        str(demo / "outcomes.csv"),
        "--as-of",
        AS_OF,
        "--format",
        "json",
    )
    (m,) = json.loads(proc.stdout)["models"]
    assert m["leads"] == 3000
    assert 0.05 < m["converted"] / m["leads"] < 0.3  # a plausible B2B conversion rate
    assert 0.65 < m["roc_auc"] < 0.9
    top, bottom = m["deciles"][0], m["deciles"][-1]
    assert top["rate"] > 3 * bottom["rate"]
