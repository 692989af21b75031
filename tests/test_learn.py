"""Learning points from outcomes: a valid, readable model that beats a naive one."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from leadscore.model import load_model
from tests.cli_helpers import ls

LEAKY = (
    "Tags,Lead Quality,Last Activity,Last Notable Activity,Asymmetrique Activity Index,"
    "Asymmetrique Profile Index,Asymmetrique Activity Score,Asymmetrique Profile Score"
)


def _scores(model: Path, leads: Path, out: Path) -> dict[str, float]:
    ls("score", str(model), "--leads", str(leads), "-o", str(out), "-q")
    return {r["lead_id"]: r["score"] for r in map(json.loads, out.read_text().splitlines())}


def test_learned_model_on_x_education_validates_and_beats_a_naive_model(
    shared_data: Path, tmp_path: Path
) -> None:
    rows = list(csv.reader((shared_data / "xeducation" / "Leads.csv").read_text().splitlines()))
    head, body = rows[0], rows[1:]
    head[0] = "lead_id"
    rng = random.Random(5)
    body = rng.sample(body, 3000)
    y_all = [r[head.index("Converted")] for r in body]
    tr, te = train_test_split(np.arange(len(body)), test_size=0.3, stratify=y_all, random_state=42)
    for name, idx in (("train", tr), ("test", te)):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(body[i] for i in idx)
    learned = tmp_path / "learned.yaml"
    proc = ls(
        "learn",
        "--leads",
        str(tmp_path / "train.csv"),
        "--outcome-column",
        "Converted",
        "--exclude",
        LEAKY,
        "--target-rate",
        "0.7",
        "-o",
        str(learned),
    )
    assert "Wrote" in proc.stderr and "Cross-validated ROC AUC" in proc.stderr
    assert ls("validate", str(learned)).returncode == 0
    text = learned.read_text()
    assert "# Learned from 2,100 leads" in text
    assert "Tags" not in text and "Lead Quality" not in text
    assert '"not answered"' not in text  # placeholders are a bin, named in the rule
    assert "Select" in text  # ... whose condition names the placeholder value
    model = load_model(learned)
    assert all(float(r.points).is_integer() for r in model.rules)
    naive = tmp_path / "naive.yaml"
    naive.write_text(
        "model: 1\nname: naive\nfit:\n  rules:\n    - name: Long visit\n"
        '      when: {field: "Total Time Spent on Website", gte: 500}\n      points: 10\n'
        "mql:\n  threshold: 10\n"
    )
    y = {body[i][0]: body[i][head.index("Converted")] == "1" for i in te}
    ids = sorted(y)
    test_csv = tmp_path / "test.csv"
    got = _scores(learned, test_csv, tmp_path / "a.jsonl")
    base = _scores(naive, test_csv, tmp_path / "b.jsonl")
    auc = roc_auc_score([y[i] for i in ids], [got[i] for i in ids])
    auc_naive = roc_auc_score([y[i] for i in ids], [base[i] for i in ids])
    assert auc > auc_naive + 0.05
    assert auc > 0.84


def _synthetic(tmp_path: Path, n: int, leak: bool = False) -> Path:
    rnd = random.Random(11)
    leads = tmp_path / "leads.csv"
    with open(leads, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "lead_id",
                "employees",
                "industry",
                "country",
                "Converted",
                *(["stage_note"] if leak else []),
            ]
        )
        for i in range(n):
            emp = rnd.choice(["5", "40", "250", "1200", "8000", "", "n/a"])
            ind = rnd.choice(["Software", "Retail", "Fintech", "Select", ""])
            z = (1.5 if emp in ("250", "1200") else 0) + (1.0 if ind == "Software" else 0) - 1.2
            yes = rnd.random() < 1 / (1 + np.exp(-z))
            note = "called back" if yes else "no answer"
            if leak and rnd.random() < 0.01:
                note = "no answer"
            w.writerow(
                [
                    f"L{i:05d}",
                    emp,
                    ind,
                    rnd.choice(["US", "GB", "DE"]),
                    "1" if yes else "0",
                    *([note] if leak else []),
                ]
            )
    return leads


def test_too_few_outcomes_is_refused_with_what_is_needed(tmp_path: Path) -> None:
    leads = _synthetic(tmp_path, 120)
    proc = ls(
        "learn",
        "--leads",
        str(leads),
        "--outcome-column",
        "Converted",
        "-o",
        str(tmp_path / "x.yaml"),
        ok=False,
    )
    assert proc.returncode == 1
    assert "too few outcomes to learn from: 120 leads" in proc.stderr
    assert "at least 300 leads" in proc.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_a_leaking_trait_is_named_and_left_out_and_learning_is_reproducible(tmp_path: Path) -> None:
    leads = _synthetic(tmp_path, 1500, leak=True)
    out = tmp_path / "a.yaml"
    proc = ls("learn", "--leads", str(leads), "--outcome-column", "Converted", "-o", str(out))
    assert (
        "Warning: the trait 'stage_note' alone predicts the outcome almost perfectly" in proc.stderr
    )
    text = out.read_text()
    assert "stage_note" not in text
    assert (
        '"employees", "between"' in text or '"employees", "gte"' in text or "employees is" in text
    )
    assert "# " in text and "converted, weight" in text
    again = tmp_path / "b.yaml"
    ls("learn", "--leads", str(leads), "--outcome-column", "Converted", "-o", str(again))
    assert again.read_text() == text
    proc = ls(
        "learn", "--leads", str(leads), "--outcome-column", "Converted", "-o", str(again), ok=False
    )
    assert "already exists" in proc.stderr
    proc = ls(
        "learn",
        "--leads",
        str(leads),
        "--outcome-column",
        "Converted",
        "--exclude",
        "industy",
        "-o",
        str(tmp_path / "c.yaml"),
        ok=False,
    )
    assert "did you mean 'industry'" in proc.stderr


def test_base_keeps_the_rules_and_learns_the_points(tmp_path: Path) -> None:
    leads = _synthetic(tmp_path, 1500)
    base = tmp_path / "base.yaml"
    base.write_text(
        "model: 1\nname: ours\nfit:\n  rules:\n"
        "    - name: Mid-size\n      when: {field: employees, between: [100, 5000]}\n      points: 1\n"
        "    - name: Software\n      when: {field: industry, equals: software}\n      points: 1\n"
        "    - name: Germany\n      when: {field: country, equals: DE}\n      points: 30\n"
        "mql:\n  threshold: 2\n"
    )
    out = tmp_path / "learned.yaml"
    ls(
        "learn",
        "--leads",
        str(leads),
        "--outcome-column",
        "Converted",
        "--base",
        str(base),
        "-o",
        str(out),
        "--target-rate",
        "0.6",
    )
    m = load_model(out)
    pts = {r.name: r.points for r in m.rules}
    assert set(pts) <= {"Mid-size", "Software", "Germany"}
    assert pts["Mid-size"] > pts["Software"] > pts.get("Germany", 0)
    assert "only their points were learned" in out.read_text()


def test_engagement_rules_are_learned_from_events(tmp_path: Path) -> None:
    from leadscore.demo import generate

    files = generate(tmp_path, 1500, seed=3)
    ls("init", str(tmp_path / "leadscore.yaml"))
    scores = _scores_with_events(tmp_path, files.leads, files.events)
    rnd = random.Random(2)
    with open(tmp_path / "outcomes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lead_id", "outcome", "at"])
        for lid, s in scores.items():
            won = rnd.random() < 1 / (1 + np.exp(-(s - 45) / 10))
            w.writerow([lid, "sql" if won else "lost", "2026-06-10"])
    out = tmp_path / "learned.yaml"
    ls(
        "learn",
        "--leads",
        str(files.leads),
        "--events",
        str(files.events),
        "--outcomes",
        str(tmp_path / "outcomes.csv"),
        "--as-of",
        "2026-06-01",
        "-o",
        str(out),
    )
    m = load_model(out)
    assert m.engagement_rules and all(r.points > 0 for r in m.engagement_rules)
    assert m.half_life_days == 30
    proc = ls(
        "backtest",
        str(out),
        "--leads",
        str(files.leads),
        "--events",
        str(files.events),
        "--outcomes",
        str(tmp_path / "outcomes.csv"),
        "--as-of",
        "2026-06-01",
        "--format",
        "json",
    )
    assert json.loads(proc.stdout)["models"][0]["roc_auc"] > 0.75


def _scores_with_events(d: Path, leads: Path, events: Path) -> dict[str, float]:
    out = d / "s.jsonl"
    ls(
        "score",
        str(d / "leadscore.yaml"),
        "--leads",
        str(leads),
        "--events",
        str(events),
        "--as-of",
        "2026-06-01",
        "-o",
        str(out),
        "-q",
    )
    return {r["lead_id"]: r["score"] for r in map(json.loads, out.read_text().splitlines())}
