"""The HTML backtest report, rendered in Debian's headless Chromium: what a person sees."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import ls

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    from leadscore.demo import generate

    d = tmp_path_factory.mktemp("html")
    files = generate(d, 800, seed=9)
    ls("init", str(d / "leadscore.yaml"))
    ls(
        "score",
        str(d / "leadscore.yaml"),
        "--leads",
        str(files.leads),
        "--events",
        str(files.events),
        "--as-of",
        "2026-06-01",
        "-o",
        str(d / "s.jsonl"),
        "-q",
    )
    rnd = random.Random(4)
    with open(d / "outcomes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lead_id", "outcome", "at"])
        for line in (d / "s.jsonl").read_text().splitlines():
            r = json.loads(line)
            won = rnd.random() < 1 / (1 + np.exp(-(r["score"] - 45) / 10))
            w.writerow([r["lead_id"], "opportunity" if won else "disqualified", "2026-06-09"])
    (d / "blunt.yaml").write_text(
        "model: 1\nname: blunt\nfit:\n  rules:\n    - name: Big company\n"
        "      when: {field: company.employees, gte: 200}\n      points: 50\nmql:\n  threshold: 50\n"
    )
    common = [
        "backtest",
        str(d / "leadscore.yaml"),
        "--leads",
        str(files.leads),
        "--events",
        str(files.events),
        "--outcomes",
        str(d / "outcomes.csv"),
        "--as-of",
        "2026-06-01",
        "--against",
        str(d / "blunt.yaml"),
        "--target-rate",
        "0.8",
    ]
    ls(*common, "--replay", "--format", "html", "-o", str(d / "report.html"))
    data = json.loads(ls(*common, "--format", "json").stdout)
    return d / "report.html", data


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
def test_report_reads_offline_in_headless_chromium(report: tuple[Path, dict[str, object]]) -> None:
    from playwright.sync_api import sync_playwright

    path, data = report
    models = data["models"]
    assert isinstance(models, list)
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())
        assert page.title() == "Backtest: b2b-saas-starter vs blunt"
        assert page.get_by_role("heading", name="Does the model work?").is_visible()
        # the headline figure a person reads first, as the JSON has it
        aucs = page.locator("[data-figure=roc_auc]").all_inner_texts()
        assert aucs == [f"{m['roc_auc']:.3f}" for m in models]
        # five charts, drawn, each with its title as text a person can read
        figures = page.locator("figure svg")
        assert figures.count() == 5
        for i in range(5):
            box = figures.nth(i).bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 150
        body = page.locator("body").inner_text()
        for title in (
            "Conversion by score band",
            "Calibration",
            "Threshold trade-off",
            "Lift",
            "ROC curve",
        ):
            assert page.locator("figure svg text", has_text=title).count() >= 1, title
        # the model's threshold marked in the trade-off table, the recommendation spelled out
        marked = page.locator("tr.mark").first
        assert marked.is_visible() and "(the model's)" in marked.inner_text()
        assert "For MQLs that convert at 80.0% or better:" in body
        assert "Converted leads the model scored lowest" in body
        assert "As sales sees it" in body and "15–35%" in body
        assert (
            page.get_by_role("heading", name="Replay: when leads would have become MQLs").count()
            == 2
        )
        browser.close()
    assert all(u.startswith("file://") for u in requests), requests
    assert not errors
