"""The backtest benchmark: ``leadscore backtest`` against ``leadscore score`` on the same data.

    python bench/backtest.py [--leads 1000000] [--events-per-lead 20] [--repeat 3]
                             [--dir /tmp/leadscore-bench]

Generates (or reuses) the batch benchmark's seeded data set (bench/batch.py), adds an outcomes
file (Parquet: about a third of the leads reach ``sql``, a third are ``lost``, with times after
the decision point), then times, interleaved (A, B, A, B, …) so that noise on a shared machine
falls on both alike:

  A  ``leadscore score <starter model> … --output scores.jsonl``
  B  ``leadscore backtest <starter model> … --outcomes outcomes.parquet --format json --output …``

Target: B within 2x of A (median wall time). Prints a table and writes ``backtest.json`` in --dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from batch import AS_OF, ensure_data, log  # noqa: E402

TARGET = 2.0


def ensure_outcomes(d: Path) -> Path:
    out = d / "outcomes.parquet"
    if out.exists() and out.stat().st_mtime >= (d / "leads.parquet").stat().st_mtime:
        return out
    con = duckdb.connect()
    leads = str(d / "leads.parquet").replace("'", "''")
    target = str(out).replace("'", "''")
    con.execute(
        f"""COPY (SELECT lead_id,
              CASE WHEN hash(lead_id) % 3 = 0 THEN 'sql' WHEN hash(lead_id) % 3 = 1 THEN 'lost' END AS outcome,
              TIMESTAMP '{AS_OF}' + INTERVAL (hash(lead_id) % 80 + 1) DAY AS at
            FROM read_parquet('{leads}') WHERE hash(lead_id) % 3 < 2) TO '{target}' (FORMAT PARQUET)"""
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events-per-lead", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/leadscore-bench"))
    a = ap.parse_args(argv)
    d = a.dir / f"{a.leads}x{a.events_per_lead:g}"
    have = ensure_data(d, a.leads, a.events_per_lead, a.seed)
    outcomes = ensure_outcomes(d)
    model = d / "starter.yaml"
    model.write_text(resources.files("leadscore").joinpath("templates/starter.yaml").read_text())
    exe = [sys.executable, "-m", "leadscore"]
    common = [
        "--leads",
        str(d / "leads.parquet"),
        "--events",
        str(d / "events.parquet"),
        "--as-of",
        AS_OF,
    ]
    progs = {
        "A score": [*exe, "score", str(model), *common, "-o", str(d / "scores.jsonl"), "-q"],
        "B backtest": [
            *exe,
            "backtest",
            str(model),
            *common,
            "--outcomes",
            str(outcomes),
            "--format",
            "json",
            "-o",
            str(d / "backtest-report.json"),
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in progs}
    for i in range(a.repeat):
        for name, cmd in progs.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
            log(f"  run {i + 1}: {name} {times[name][-1]:.1f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["B backtest"] / med["A score"]
    result = {
        "leads": a.leads,
        "events": have["n_events"],
        "repeat": a.repeat,
        "seconds": times,
        "median_s": med,
        "backtest_over_score": round(ratio, 2),
        "target": TARGET,
        "ok": ratio <= TARGET,
    }
    (d / "backtest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{a.leads:,} leads, {have['n_events']:,} events, median of {a.repeat}:")
    print(f"  leadscore score     {med['A score']:7.1f} s")
    print(
        f"  leadscore backtest  {med['B backtest']:7.1f} s   {ratio:.2f}x score (target <= {TARGET:g}x)"
        f" {'ok' if ratio <= TARGET else 'MISSED'}"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
