"""Backtests: metrics against scikit-learn, outcomes from every source, bad input, the CLI."""

from __future__ import annotations

import csv
import itertools
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from leadscore.analytics import metrics as mx
from leadscore.analytics.stages import Labeling, parse_positive, parse_stage_map
from leadscore.errors import ConfigError
from tests.cli_helpers import ls

AS_OF = "2026-06-01"


# ---------------------------------------------------------------- pure metrics

labels_scores = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
        st.lists(st.integers(-5, 5), min_size=n, max_size=n),
    )
)


@given(labels_scores)
@settings(max_examples=200, deadline=None)
def test_roc_and_pr_auc_agree_with_scikit_learn(data: tuple[list[bool], list[int]]) -> None:
    y, s = np.array(data[0]), np.array(data[1], float)
    assert mx.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert mx.pr_auc(y, s) == pytest.approx(average_precision_score(y, s))


@given(labels_scores)
@settings(max_examples=100, deadline=None)
def test_deciles_cover_every_lead_once_and_thresholds_are_monotone(
    data: tuple[list[bool], list[int]],
) -> None:
    y, s = np.array(data[0]), np.array(data[1], float)
    bands = mx.deciles(y, s)
    assert sum(b.leads for b in bands) == len(y)
    assert sum(b.converted for b in bands) == int(y.sum())
    assert all(a.low >= b.high for a, b in itertools.pairwise(bands))
    rows = mx.thresholds(y, s, np.ones(len(y), bool), np.zeros(len(y), bool))
    assert [r.mqls for r in rows] == sorted(r.mqls for r in rows)
    assert rows[-1].recall == 1.0


def test_calibrated_probability_beats_the_base_rate_and_recommendations() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(0, 1, 4000)
    y = rng.random(4000) < 1 / (1 + np.exp(-2 * s))
    p = mx.calibrate(y, s * 10 + 50)
    assert mx.brier(y, p) < mx.brier(y, np.full(len(y), y.mean())) - 0.05
    rows = mx.thresholds(y, s, np.ones(len(y), bool), np.zeros(len(y), bool))
    rec = mx.recommend_rate(rows, 0.8)
    assert rec is not None and rec.precision >= 0.8
    assert all(r.precision < 0.8 for r in rows if r.threshold < rec.threshold)
    cap = mx.recommend_capacity(rows, 500)
    assert cap is not None and cap.mqls <= 500
    assert mx.recommend_rate(rows, 1.01) is None


def test_positive_stages_and_stage_map() -> None:
    assert parse_positive(None) == ("sql", "opportunity", "customer", "won")
    assert parse_positive("SQL, opp") == ("sql", "opportunity")
    with pytest.raises(ConfigError, match="did you mean 'opportunity'"):
        parse_positive("oportunity")
    with pytest.raises(ConfigError, match="closes a lead"):
        parse_positive("sql,lost")
    assert parse_stage_map("Closed Won=won, SAL=sql") == {"closed won": "won", "sal": "sql"}
    with pytest.raises(ConfigError, match="no '='"):
        parse_stage_map("won")
    with pytest.raises(ConfigError, match="above 0"):
        Labeling(horizon_days=0)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo leads and events, with outcomes drawn from the starter model's own scores."""
    from leadscore.demo import generate

    d = tmp_path_factory.mktemp("bt")
    files = generate(d, 1500, seed=7)
    ls("init", str(d / "leadscore.yaml"))
    ls(
        "score",
        str(d / "leadscore.yaml"),
        "--leads",
        str(files.leads),
        "--events",
        str(files.events),
        "--as-of",
        AS_OF,
        "-o",
        str(d / "scores.jsonl"),
        "-q",
    )
    rnd = random.Random(3)
    with open(d / "outcomes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lead_id", "outcome", "at"])
        for line in (d / "scores.jsonl").read_text().splitlines():
            r = json.loads(line)
            if rnd.random() < 1 / (1 + np.exp(-(r["score"] - 45) / 10)):
                w.writerow([r["lead_id"], "SQL", f"2026-06-{rnd.randint(2, 20):02d}"])
                w.writerow([r["lead_id"], "sql", "2026-06-25"])  # a duplicate: the first wins
            else:
                w.writerow([r["lead_id"], "Closed Lost", "2026-06-10"])
        w.writerow(["NOT-A-LEAD", "sql", "2026-06-03"])
    # a blunter model to compare with
    (d / "blunt.yaml").write_text(
        "model: 1\nname: blunt\nfit:\n  rules:\n    - name: Big company\n"
        "      when: {field: company.employees, gte: 200}\n      points: 50\n"
        "mql:\n  threshold: 50\n"
    )
    return d


def _bt(d: Path, *extra: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return ls(
        "backtest",
        str(d / "leadscore.yaml"),
        "--leads",
        str(d / "leads.csv"),
        "--events",
        str(d / "events.parquet"),
        "--as-of",
        AS_OF,
        *extra,
        ok=ok,
    )


def test_backtest_json_side_by_side(demo: Path) -> None:
    proc = _bt(
        demo,
        "--outcomes",
        str(demo / "outcomes.csv"),
        "--against",
        str(demo / "blunt.yaml"),
        "--target-rate",
        "0.7",
        "--capacity",
        "300",
        "--format",
        "json",
    )
    r = json.loads(proc.stdout)
    assert [m["model"] for m in r["models"]] == ["b2b-saas-starter", "blunt"]
    mine, blunt = r["models"]
    assert r["outcomes"]["duplicates"] > 100
    assert r["outcomes"]["unknown_leads"] == 1
    assert mine["leads"] == 1500 and 0 < mine["converted"] < 1500
    assert mine["roc_auc"] > 0.8 > blunt["roc_auc"]
    assert mine["brier"] < mine["brier_base"]
    assert sum(b["leads"] for b in mine["deciles"]) == 1500
    assert {g["label"] for g in mine["grades"]} <= {f"{a}{b}" for a in "ABCD" for b in "1234"}
    assert mine["model_threshold"]["threshold"] == 50
    rate = mine["recommendations"]["target_rate"]["row"]
    assert rate["precision"] >= 0.7
    assert mine["recommendations"]["capacity"]["row"]["mqls"] <= 300
    groups = mine["groups"]
    assert sum(g["leads"] for g in groups.values()) == 1500
    assert groups["fast_track"]["rate"] > groups["not_mql"]["rate"]
    assert mine["false_negatives"] and all(f["score"] < 50 for f in mine["false_negatives"])
    assert mine["rules"]["best"][0]["rate"] >= mine["rules"]["worst"][0]["rate"]
    assert 0 < mine["segments"]["top_share_of_leads"] < 1
    assert any("the earliest time wins" in n for n in r["notes"])


def test_backtest_table_names_the_threshold_and_recommendation(demo: Path) -> None:
    proc = _bt(demo, "--outcomes", str(demo / "outcomes.csv"), "--target-rate", "0.7")
    assert "ROC AUC" in proc.stdout and "Conversion by score decile" in proc.stdout
    assert "50 ◀" in proc.stdout
    assert "★ For MQLs converting at 70.0% or better: threshold" in proc.stdout
    assert "Converted leads the model scored lowest" in proc.stdout


def test_horizon_right_censors_open_leads(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    rows = list(csv.reader((demo / "outcomes.csv").read_text().splitlines()))
    # half the closed-lost rows dropped: those leads have no outcome and are still open in June
    kept = [r for r in rows if r[1] != "Closed Lost" or int(r[0][2:]) % 2]
    out.write_text("\n".join(",".join(r) for r in kept) + "\n")
    proc = _bt(demo, "--outcomes", str(out), "--horizon-days", "30", "--format", "json")
    r = json.loads(proc.stdout)
    assert r["left_out"]["open"] > 0
    assert r["models"][0]["leads"] + r["left_out"]["open"] == 1500
    assert any("still open" in n for n in r["notes"])
    # outcomes dated before the decision point: converted already, left out
    proc = ls(
        "backtest",
        str(demo / "leadscore.yaml"),
        "--leads",
        str(demo / "leads.csv"),
        "--outcomes",
        str(demo / "outcomes.csv"),
        "--as-of",
        "2026-06-15",
        "--format",
        "json",
    )
    r = json.loads(proc.stdout)
    assert r["left_out"]["before_decision"] > 0


def test_no_positives_and_no_negatives_are_clear_errors(demo: Path, tmp_path: Path) -> None:
    lost = tmp_path / "lost.jsonl"
    ids = [json.loads(x)["lead_id"] for x in (demo / "scores.jsonl").read_text().splitlines()]
    lost.write_text(
        "".join(
            json.dumps({"lead_id": i, "outcome": "lost", "at": "2026-06-05"}) + "\n" for i in ids
        )
    )
    proc = _bt(demo, "--outcomes", str(lost), ok=False)
    assert proc.returncode == 1 and "none of the 1,500 leads converted" in proc.stderr
    won = tmp_path / "won.csv"
    won.write_text("lead_id,outcome,at\n" + "".join(f"{i},won,2026-06-05\n" for i in ids))
    proc = _bt(demo, "--outcomes", str(won), ok=False)
    assert proc.returncode == 1 and "no negatives" in proc.stderr


def test_unknown_stage_and_missing_column_are_explained(demo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("lead_id,outcome,at\nL-000001,oportunity,2026-06-05\n")
    proc = _bt(demo, "--outcomes", str(bad), ok=False)
    assert (
        "'oportunity' (1 rows)" in proc.stderr
        and "did you mean 'opportunity'" in proc.stderr.lower()
    )
    assert "--stage-map" in proc.stderr
    proc = _bt(
        demo,
        "--outcomes",
        str(bad),
        "--stage-map",
        "oportunity=opportunity",
        "--horizon-days",
        "0",
        "--format",
        "json",
        ok=False,
    )
    assert "no negatives" not in proc.stderr  # mapped: 1 converted, the rest not
    bad.write_text("lead,result\nL-000001,won\n")
    proc = _bt(demo, "--outcomes", str(bad), ok=False)
    assert "no 'lead_id' column" in proc.stderr
    proc = _bt(demo, ok=False)
    assert "exactly one of --outcomes" in proc.stderr


def test_outcome_before_the_lead_existed_and_outcome_column(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    lines = ["lead_id,created_at,size,Converted"]
    for i in range(200):
        lines.append(f"L{i},2026-01-01,{i},{'Yes' if i % 3 == 0 else 'No'}")
    leads.write_text("\n".join(lines) + "\n")
    model = tmp_path / "m.yaml"
    model.write_text(
        "model: 1\nname: m\nfit:\n  rules:\n    - name: Big\n      when: {field: size, gte: 100}\n      points: 10\nmql:\n  threshold: 10\n"
    )
    outcomes = tmp_path / "o.csv"
    outcomes.write_text(
        "lead_id,outcome,at\nL0,sql,2025-12-01\nL3,sql,2026-01-05\nL4,lost,2026-01-05\n"
    )
    proc = ls(
        "backtest",
        str(model),
        "--leads",
        str(leads),
        "--outcomes",
        str(outcomes),
        "--as-of",
        "2026-01-02",
        "--horizon-days",
        "0",
        "--format",
        "json",
    )
    r = json.loads(proc.stdout)
    assert r["left_out"]["before_lead"] == 1
    assert any("before the lead was created" in n for n in r["notes"])
    proc = ls(
        "backtest",
        str(model),
        "--leads",
        str(leads),
        "--outcome-column",
        "Converted",
        "--format",
        "json",
    )
    m = json.loads(proc.stdout)["models"][0]
    assert m["leads"] == 200 and m["converted"] == 67
    proc = ls(
        "backtest", str(model), "--leads", str(leads), "--outcome-column", "Convertd", ok=False
    )
    assert "did you mean 'Converted'" in proc.stderr
    leads.write_text(leads.read_text().replace("L5,2026-01-01,5,No", "L5,2026-01-01,5,maybe"))
    proc = ls(
        "backtest", str(model), "--leads", str(leads), "--outcome-column", "Converted", ok=False
    )
    assert (
        "must hold 0/1, yes/no or true/false for each lead; it also holds 'maybe' (1 lead)"
        in proc.stderr
    )


def test_outcomes_from_the_service_stage_history(service_db_url: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from leadscore.store.db import open_engine
    from leadscore.store.schema import stage_history

    engine = open_engine(service_db_url)
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,size\n" + "".join(f"L{i},{i}\n" for i in range(100)))
    us = 1_780_000_000_000_000  # 2026-05-28
    with engine.begin() as c:
        for i in range(100):
            c.execute(
                sa.insert(stage_history).values(
                    lead_id=f"L{i}", stage="mql", at_us=us, reason="score"
                )
            )
            stage = "sql" if i >= 60 else "disqualified"
            c.execute(
                sa.insert(stage_history).values(
                    lead_id=f"L{i}", stage=stage, at_us=us + 86_400_000_000, reason="sales"
                )
            )
    engine.dispose()
    model = tmp_path / "m.yaml"
    model.write_text(
        "model: 1\nname: m\nfit:\n  rules:\n    - name: Big\n      when: {field: size, gte: 50}\n      points: 10\nmql:\n  threshold: 10\n"
    )
    proc = ls(
        "backtest",
        str(model),
        "--leads",
        str(leads),
        "--database-url",
        service_db_url,
        "--as-of",
        "2026-05-27",
        "--format",
        "json",
    )
    r = json.loads(proc.stdout)
    m = r["models"][0]
    assert (m["leads"], m["converted"]) == (100, 40)
    assert m["roc_auc"] == pytest.approx(1 - (10 * 40) / (40 * 60) / 1, abs=0.2)
    assert r["outcomes"]["ignored_stages"] == {"mql": 100}


def test_a_large_outcomes_file_is_streamed(tmp_path: Path) -> None:
    """Outcomes are read by DuckDB in one pass; Python never holds the file (here 400k rows)."""
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,size\n" + "".join(f"L{i},{i % 100}\n" for i in range(2000)))
    big = tmp_path / "outcomes.csv"
    with open(big, "w") as f:
        f.write("lead_id,outcome,at\n")
        for k in range(200):
            for i in range(2000):
                f.write(
                    f"{'L' if k else 'X'}{i},{'sql' if i % 100 >= 50 else 'lost'},2026-05-{1 + k % 28:02d}\n"
                )
    model = tmp_path / "m.yaml"
    model.write_text(
        "model: 1\nname: m\nfit:\n  rules:\n    - name: Big\n      when: {field: size, gte: 50}\n      points: 10\nmql:\n  threshold: 10\n"
    )
    proc = ls(
        "backtest",
        str(model),
        "--leads",
        str(leads),
        "--outcomes",
        str(big),
        "--as-of",
        "2026-04-30",
        "--format",
        "json",
    )
    r = json.loads(proc.stdout)
    assert r["outcomes"]["rows"] == 400_000
    assert r["outcomes"]["unknown_leads"] == 2000
    assert r["models"][0]["roc_auc"] == 1.0


def test_replay_finds_the_first_moment_a_lead_qualifies() -> None:
    from datetime import UTC, datetime

    from leadscore.analytics.replay import first_mql
    from leadscore.engine import Event, Scorer
    from leadscore.model import parse_model

    m = parse_model(
        "model: 1\nname: r\nfit:\n  rules:\n    - name: VP\n      when: {field: title, contains: vp}\n"
        "      points: 20\nengagement:\n  half_life_days: 10\n  rules:\n    - name: Pricing\n"
        "      event: page\n      when: {field: path, starts_with: /pricing}\n      points: 20\n"
        "mql:\n  threshold: 50\n"
    )
    sc = Scorer(m)

    def at(day: int) -> datetime:
        return datetime(2026, 5, day, tzinfo=UTC)

    events = [
        Event("page", at(1), {"path": "/pricing"}),
        Event("page", at(2), {"path": "/blog"}),
        Event("page", at(3), {"path": "/pricing"}),  # 20 + 20·0.5^(2/10) + 20 = 57.4 >= 50
        Event("page", at(20), {"path": "/pricing"}),
    ]
    assert first_mql(sc, {"title": "VP Sales"}, events, at(25)) == at(3)
    assert first_mql(sc, {"title": "VP Sales"}, events, at(2)) is None
    assert first_mql(sc, {"title": "Intern"}, events, at(25)) is None
    # once an MQL at the decision point, the replay finds a moment at or before it
    assert sc.score({"title": "VP Sales"}, events, at(20)).mql


def test_backtest_replay_in_json(demo: Path) -> None:
    proc = _bt(demo, "--outcomes", str(demo / "outcomes.csv"), "--replay", "--format", "json")
    m = json.loads(proc.stdout)["models"][0]
    rp = m["replay"]
    assert rp["mqls"] >= m["model_threshold"]["mqls"]  # decay can only have un-qualified some
    assert (
        rp["converted_after_mql"] + rp["converted_before_mql"] + rp["not_converted"] == rp["mqls"]
    )


def test_each_lead_judged_as_it_stood_when_it_was_created(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "lead_id,created_at,title\nL1,2026-01-01,VP Sales\nL2,2026-03-01,Engineer\n"
        "L3,2026-01-01,Engineer\nL4,,Engineer\n"
    )
    events = tmp_path / "events.csv"
    events.write_text(
        "lead_id,event,timestamp,properties\n"
        'L1,page,2026-02-01T00:00:00Z,"{""path"": ""/pricing""}"\n'
        'L2,page,2026-02-15T00:00:00Z,"{""path"": ""/pricing""}"\n'
    )
    outcomes = tmp_path / "o.csv"
    outcomes.write_text(
        "lead_id,outcome,at\nL1,sql,2026-02-10\nL2,sql,2026-03-05\nL3,lost,2026-01-20\n"
    )
    model = tmp_path / "m.yaml"
    model.write_text(
        "model: 1\nname: m\nfit:\n  rules:\n    - name: VP\n      when: {field: title, contains: vp}\n"
        "      points: 10\nengagement:\n  rules:\n    - name: Pricing\n      event: page\n"
        "      when: {field: path, starts_with: /pricing}\n      points: 20\nmql:\n  threshold: 100\n"
    )
    base = [
        "backtest",
        str(model),
        "--leads",
        str(leads),
        "--events",
        str(events),
        "--outcomes",
        str(outcomes),
        "--horizon-days",
        "0",
        "--as-of",
        "2026-06-01",
        "--format",
        "json",
    ]
    r = json.loads(ls(*base, "--decision-point", "created").stdout)
    m = r["models"][0]
    # L1 at its creation: the VP rule only (its pricing visit came later); L2: its earlier visit
    assert {f["lead_id"]: f["score"] for f in m["false_negatives"]} == {"L1": 10, "L2": 20}
    assert r["left_out"]["no_decision_point"] == 1  # L4: no created_at, no events
    assert (m["leads"], m["converted"]) == (3, 2)
    # at one fixed instant instead, both conversions came before it
    proc = ls(*base, ok=False)
    assert "none of the" in proc.stderr or "no lead" in proc.stderr
