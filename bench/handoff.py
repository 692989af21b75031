"""Handoff benchmark: what routing and SLA bookkeeping add to ingest, per MQL.

    python bench/handoff.py [--database sqlite|postgres|both] [--mqls 2000] [--batch 50]
                            [--repeat 3]

Each round ingests the same Segment batches — every lead an identify and a demo request, so
each lead becomes an MQL (fast track) in the call that brings it — into two fresh databases of
the same kind through the service (``Service.ingest``, one transaction per call, as
``leadscore serve`` runs it): once with the handoff switched off (the MQL, its stage history
and its ``lead.mql`` row only, as before routing existed) and once with the issue's routing
file active (the episode, lead-to-account lookup, the decision over two teams with a cap and
working hours, the assignment, the owner, round robin, the SLA deadline with working hours, and
``lead.assigned`` for a subscribed webhook). The two runs alternate so that other load falls
on both. It reports the time per MQL of each, the difference (what the handoff adds per MQL)
and their ratio. Messages are checked before timing; the clock is fixed inside working hours.
Results go to stdout and bench/results/handoff.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadscore.service.facade import Service  # noqa: E402
from leadscore.service.messages import Message, check_message  # noqa: E402
from leadscore.service.webhooks import add_webhook  # noqa: E402
from leadscore.store import open_engine  # noqa: E402

MODEL = (ROOT / "leadscore" / "templates" / "starter.yaml").read_text()
ROUTING = """\
routing: 1
name: acme-sales
teams:
  enterprise:
    members: [ann@acme.io, raj@acme.io]
    max_open_mqls: 100000
    working_hours: {timezone: America/New_York, days: mon-fri, hours: "09:00-18:00"}
  smb:
    members: [lee@acme.io]
rules:
  - name: Enterprise North America
    when: {all: [{field: company.employees, gte: 1000}, {field: country, in: [US, CA]}]}
    team: enterprise
  - name: Everyone else
    team: smb
fallback: lee@acme.io
sla:
  - name: Demo within 5 minutes
    when: {field: fast_track, equals: true}
    first_touch_within: 5m
    escalate_to: lee@acme.io
  - name: Other MQLs within a business day
    first_touch_within: 24h
    working_hours: true
rejection_reasons: [bad fit, no intent]
"""
#: Tuesday 10:00 in New York: the enterprise team is at work
NOW = datetime(2026, 6, 2, 14, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000


class FixedClock:
    def now_us(self) -> int:
        return NOW_US


def batches(n: int, size: int) -> list[list[tuple[int, Message]]]:
    """``n`` leads, each an identify and a demo request, ``size`` leads per call."""
    out = []
    stamp = NOW.isoformat()
    for start in range(0, n, size):
        msgs = []
        for i in range(start, min(n, start + size)):
            lead = f"u-{i}"
            msgs.append(
                {
                    "type": "identify",
                    "userId": lead,
                    "messageId": str(uuid.uuid4()),
                    "timestamp": stamp,
                    "traits": {
                        "email": f"p{i}@company{i % 400}.com",
                        "title": "VP Marketing",
                        "country": "US" if i % 2 else "GB",
                        "company": {"employees": 3000 if i % 3 else 150, "industry": "Software"},
                    },
                }
            )
            msgs.append(
                {
                    "type": "track",
                    "userId": lead,
                    "messageId": str(uuid.uuid4()),
                    "timestamp": stamp,
                    "event": "Demo Requested",
                    "properties": {},
                }
            )
        out.append([(j, check_message(m, NOW_US)) for j, m in enumerate(msgs)])
    return out


def run(url: str, calls: list[list[tuple[int, Message]]], handoff: bool) -> tuple[float, int]:
    """Seconds to ingest every call, and the MQLs made."""
    engine = open_engine(url)
    try:
        svc = Service(engine, clock=FixedClock())
        svc.add_model(MODEL, "bench")
        add_webhook(engine, "http://127.0.0.1:9/hook", ["lead.mql", "lead.assigned"])
        if handoff:
            svc.add_routing(ROUTING, "bench")
        else:
            svc._assigner = lambda conn, now: None  # type: ignore[method-assign,assignment,return-value]
        mqls = 0
        started = time.perf_counter()
        for call in calls:
            mqls += len(svc.ingest(call, NOW_US).new_mqls)
        return time.perf_counter() - started, mqls
    finally:
        engine.dispose()


def fresh_url(kind: str, workdir: Path, pg: Any) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / (uuid.uuid4().hex + '.db')}"
    return str(pg.create_database())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--mqls", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50, help="leads per ingest call")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    pg = None
    if "postgres" in kinds:
        from leadscore.testing.postgres import PostgresServer

        pg = PostgresServer().start()
    results: dict[str, Any] = {"mqls": args.mqls, "batch": args.batch, "databases": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in kinds:
                calls = batches(args.mqls, args.batch)
                base: list[float] = []
                routed: list[float] = []
                for _ in range(args.repeat):
                    t0, n0 = run(fresh_url(kind, Path(tmp), pg), calls, False)
                    t1, n1 = run(fresh_url(kind, Path(tmp), pg), calls, True)
                    assert n0 == n1 == args.mqls, (n0, n1)
                    base.append(t0 / args.mqls * 1000)
                    routed.append(t1 / args.mqls * 1000)
                b, r = statistics.median(base), statistics.median(routed)
                results["databases"][kind] = {
                    "ms_per_mql_without_handoff": round(b, 3),
                    "ms_per_mql_with_handoff": round(r, 3),
                    "handoff_ms_per_mql": round(r - b, 3),
                    "ratio": round(r / b, 2),
                }
                print(
                    f"{kind}: ingest {b:.3f} ms per MQL without the handoff, {r:.3f} ms with it: "
                    f"+{r - b:.3f} ms per MQL (x{r / b:.2f})"
                )
    finally:
        if pg is not None:
            pg.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "handoff.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
