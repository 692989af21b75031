"""The handoff's pure rules per MQL: one routing decision and one SLA deadline.

    python bench/handoff_rules.py [--mqls 100000] [--seed 42]

The live service routes a lead and sets its SLA clock in the ingest transaction that makes it an
MQL; the issue's budget for routing and SLA bookkeeping is 1 ms per MQL. This measures the pure
part of it (``route`` + ``sla_for`` on the routing file of docs/handoff.md) over random leads,
random instants over a year (nights and weekends included, so deadlines cross them), reps away
and at their cap at random, and prints microseconds per MQL. The database writes around it are
the live service's share, measured by its own benchmark.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

from leadscore.handoff import RepState, parse_routing, route, sla_for

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mqls", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    docs = (HERE.parent / "docs" / "handoff.md").read_text(encoding="utf-8")
    m = re.search(r"```yaml\n(routing: 1\n.*?)```", docs, re.S)
    assert m, "docs/handoff.md has no routing file"
    routing = parse_routing(m.group(1), "docs/handoff.md")
    rng = random.Random(args.seed)
    start = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    year = 365 * 86_400_000_000
    members = ["ann@acme.io", "raj@acme.io", "lee@acme.io"]
    leads = [
        (
            {
                "company": {"employees": rng.choice([10, 200, 1500, 20000])},
                "country": rng.choice(["US", "CA", "FR", "DE"]),
                "fast_track": rng.random() < 0.2,
                "score": rng.uniform(50, 100),
            },
            start + rng.randrange(year),
            {r: RepState(away=True) for r in members if rng.random() < 0.1},
            {r: rng.randrange(30) for r in members},
        )
        for _ in range(args.mqls)
    ]
    last: dict[str, str | None] = {}
    t0 = time.perf_counter()
    for lead, at_us, reps, open_mqls in leads:
        d = route(routing, lead, reps=reps, last_member=last, open_mqls=open_mqls, at_us=at_us)
        if d.last_member is not None and d.team is not None:
            last[d.team] = d.last_member
        sla_for(routing, lead, at_us, d.team)
    elapsed = time.perf_counter() - t0
    per = elapsed / args.mqls * 1e6
    print(f"{args.mqls} MQLs: {elapsed:.2f} s, {per:.1f} µs per MQL (route + sla_for)")
    sys.exit(0)


if __name__ == "__main__":
    main()
