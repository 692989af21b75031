"""Handoff benchmark: what routing and SLA bookkeeping add to ingest, per MQL.

    python bench/handoff.py [--database sqlite|postgres|both] [--mqls 2000] [--batch 50]
                            [--repeat 3]

Each round ingests the same Segment calls — every lead an identify and a demo request, so
each lead becomes an MQL (fast track) in the call that brings it — into two fresh databases of
the same kind through the service (``Service.ingest``, one transaction per call, as
``leadscore serve`` runs it): once with the handoff switched off (the MQL, its stage history
and its ``lead.mql`` row only, as before routing existed) and once with the issue's routing
file active (the episode, lead-to-account lookup, the decision over two teams with a cap and
working hours, the assignment, the owner, round robin, the SLA deadline with working hours, and
``lead.assigned`` for a subscribed webhook). Every call goes to both databases, one right after
the other (the order alternating), so that load from elsewhere falls on both alike. It reports
the median call's time per MQL of each, the difference (what the handoff adds per MQL), their
ratio, and the means. Messages are checked before timing; the clock is fixed inside working hours.
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


def service(url: str, handoff: bool) -> tuple[Service, Any]:
    """A service on a fresh database with the model (and the routing, with ``handoff``)."""
    engine = open_engine(url)
    svc = Service(engine, clock=FixedClock())
    svc.add_model(MODEL, "bench")
    add_webhook(engine, "http://127.0.0.1:9/hook", ["lead.mql", "lead.assigned"])
    if handoff:
        svc.add_routing(ROUTING, "bench")
    else:
        svc._assigner = lambda conn, now: None  # type: ignore[method-assign,assignment,return-value]
    return svc, engine


def run(
    base_url: str, routed_url: str, calls: list[list[tuple[int, Message]]]
) -> tuple[list[float], list[float], int]:
    """Each call into both databases in turn (so load from elsewhere falls on both alike):
    the seconds of every call without and with the handoff, and the MQLs made."""
    base, e0 = service(base_url, False)
    routed, e1 = service(routed_url, True)
    try:
        t0, t1, mqls = [], [], 0
        for i, call in enumerate(calls):
            order = [(base, t0), (routed, t1)] if i % 2 else [(routed, t1), (base, t0)]
            for svc, times in order:
                started = time.perf_counter()
                got = svc.ingest(call, NOW_US)
                times.append(time.perf_counter() - started)
                if svc is routed:
                    mqls += len(got.new_mqls)
        return t0, t1, mqls
    finally:
        e0.dispose()
        e1.dispose()


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
                    t0, t1, n = run(
                        fresh_url(kind, Path(tmp), pg), fresh_url(kind, Path(tmp), pg), calls
                    )
                    assert n == args.mqls, n
                    base += t0
                    routed += t1
                per = min(args.batch, args.mqls)  # MQLs per call
                # the median call of each, per MQL; and the totals
                b = statistics.median(base) / per * 1000
                r = statistics.median(routed) / per * 1000
                tb = sum(base) / (args.mqls * args.repeat) * 1000
                tr = sum(routed) / (args.mqls * args.repeat) * 1000
                results["databases"][kind] = {
                    "ms_per_mql_without_handoff": round(b, 3),
                    "ms_per_mql_with_handoff": round(r, 3),
                    "handoff_ms_per_mql": round(r - b, 3),
                    "ratio": round(r / b, 2),
                    "mean_ms_per_mql_without_handoff": round(tb, 3),
                    "mean_ms_per_mql_with_handoff": round(tr, 3),
                }
                print(
                    f"{kind}, {per} MQL(s) per call: median {b:.3f} ms per MQL without the "
                    f"handoff, {r:.3f} ms with it: {r - b:+.3f} ms per MQL (x{r / b:.2f}); "
                    f"means {tb:.3f} and {tr:.3f} ms ({tr - tb:+.3f})"
                )
    finally:
        if pg is not None:
            pg.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "handoff.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
