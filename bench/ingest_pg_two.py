"""Several service processes on one PostgreSQL without HTTP: how long their ingest requests wait
for the leads' locks and hold them, beside events/s and the CPU per batch on both sides.

    python bench/ingest_pg_two.py [--processes 2] [--senders 2] [--rounds 2] [--baseline CHECKOUT]

Each process runs the service in process (``Service.ingest``, no HTTP) with ``--senders``
threads, on its share of ``bench/ingest.py``'s traffic (the identifies first, by one process;
then the page views and track events, stamped as they are sent), all processes starting
together on a fresh database of one throwaway PostgreSQL server. Per request it times the round
trip that stores the events and takes the leads' locks (``ingest_pg.store_lock_read``: mostly
waiting for another process's transaction when one holds a lead) and the work done once they
are held, up to the commit (``ingest_groups.ingest``). With ``--baseline`` the rounds alternate
with that checkout's, and the last lines give the ratios, round by round. A harness for the
time a transaction holds its leads, which ``bench/ingest.py``'s HTTP servers hide.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_SETUP = """
import sys
sys.path[:0] = [{co!r}, {co!r} + "/bench"]
from ingest import make_batches
from serving import MODEL
from leadscore.api import create_app
from leadscore.service.messages import check_message
from leadscore.store import open_engine
service = create_app(open_engine({url!r}), deliver=False).state.service
service.ensure_model(MODEL.read_text(encoding="utf-8"), str(MODEL), "bench")
for batch in make_batches({events}, {leads})[: {first}]:
    at = service.now_us()
    service.ingest([(i, check_message(m, at, strict_json=True)) for i, m in enumerate(batch)], at)
"""


def child(url: str, checkout: str, index: int, args: argparse.Namespace) -> None:
    """One process: its share of the batches, sent by ``args.senders`` threads once told to."""
    sys.path[:0] = [checkout, checkout + "/bench"]
    from ingest import make_batches

    import leadscore.service.ingest_groups as groups
    import leadscore.service.ingest_pg as ingest_pg
    from leadscore.api import create_app
    from leadscore.api.limits import Limits
    from leadscore.service.messages import check_message
    from leadscore.service.ratelimit import Rate, Settings
    from leadscore.store import open_engine

    taking: list[float] = []
    holding: list[tuple[float, float]] = []
    store_lock_read, ingest = ingest_pg.store_lock_read, groups.ingest

    def timed_take(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return store_lock_read(*a, **k)
        finally:
            taking.append(time.perf_counter() - t0)

    def timed_hold(*a: Any, **k: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return ingest(*a, **k)
        finally:
            holding.append((time.perf_counter() - t0, time.thread_time() - c0))

    ingest_pg.store_lock_read = timed_take  # type: ignore[assignment]
    groups.ingest = timed_hold  # type: ignore[assignment]
    unlimited = Settings(ingest=Rate(0, 0), api=Rate(0, 0), ingest_inflight=0, api_inflight=0)
    service = create_app(open_engine(url), deliver=False, limits=Limits(unlimited)).state.service
    batches = make_batches(args.events, args.leads)[_identifies(args) :]
    todo = [b for i, b in enumerate(batches) if i % args.processes == index]
    n = len(todo)
    lock = threading.Lock()

    def send() -> None:
        while True:
            with lock:
                if not todo:
                    return
                batch = todo.pop(0)
            at = service.now_us()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            msgs = [m if m.get("timestamp") else {**m, "timestamp": stamp} for m in batch]
            service.ingest(
                [(i, check_message(m, at, strict_json=True)) for i, m in enumerate(msgs)], at
            )

    print("ready", flush=True)
    sys.stdin.readline()
    t0, c0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=send) for _ in range(args.senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out = {
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
        "batches": n,
        "taking": sum(taking),
        "holding": sum(w for w, _ in holding),
        "holding_cpu": sum(c for _, c in holding),
        "requests": len(holding),
    }
    print(json.dumps(out), flush=True)


def _identifies(args: argparse.Namespace) -> int:
    """How many batches hold the traffic's identifies (one per lead, first)."""
    return -(-args.leads // 100)


def run(pg: Any, checkout: str, args: argparse.Namespace) -> dict[str, float]:
    """One round of ``checkout`` on a fresh database."""
    url = pg.create_database()
    env = {**os.environ, "PYTHONPATH": checkout}
    setup = _SETUP.format(
        co=checkout, url=url, events=args.events, leads=args.leads, first=_identifies(args)
    )
    subprocess.run([sys.executable, "-c", setup], check=True, cwd=checkout, env=env)
    command = [sys.executable, __file__, "--child", url, checkout]
    kids = [
        subprocess.Popen(
            [*command, str(i), *sys.argv[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=checkout,
            env=env,
        )
        for i in range(args.processes)
    ]
    for k in kids:
        assert k.stdout is not None and k.stdout.readline().strip() == "ready"
    pg0, load = pg.cpu_s(), os.getloadavg()[0]
    for k in kids:
        assert k.stdin is not None
        k.stdin.write("go\n")
        k.stdin.flush()
    got = [json.loads(k.stdout.readline()) for k in kids if k.stdout is not None]
    for k in kids:
        k.wait()
    pg_cpu = pg.cpu_s() - pg0
    n = sum(r["batches"] for r in got)
    requests = sum(r["requests"] for r in got)
    return {
        "load": load,
        "events/s": n * 100 / max(r["wall"] for r in got),
        "server CPU": 1000 * sum(r["cpu"] for r in got) / n,
        "PostgreSQL CPU": 1000 * pg_cpu / n,
        "taking": 1000 * sum(r["taking"] for r in got) / requests,
        "holding": 1000 * sum(r["holding"] for r in got) / requests,
        "holding CPU": 1000 * sum(r["holding_cpu"] for r in got) / requests,
    }


def show(name: str, r: dict[str, float]) -> str:
    return (
        f"{name:9s} load {r['load']:.1f}: {r['events/s']:6,.0f} events/s; per batch: server CPU "
        f"{r['server CPU']:5.2f} ms, PostgreSQL CPU {r['PostgreSQL CPU']:5.2f} ms; per request: "
        f"taking the leads {r['taking']:5.2f} ms, holding them {r['holding']:5.2f} ms "
        f"({r['holding CPU']:.2f} ms CPU)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--senders", type=int, default=2, help="threads per process")
    ap.add_argument("--events", type=int, default=15_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", help="another checkout, run alternately")
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, checkout, index = sys.argv[2], sys.argv[3], int(sys.argv[4])
        child(url, checkout, index, ap.parse_args(sys.argv[5:]))
        return 0
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from leadscore.testing.postgres import PostgresServer

    checkouts = {"this": str(ROOT)}
    if args.baseline:
        checkouts["baseline"] = str(Path(args.baseline).resolve())
    ratios: dict[str, list[float]] = {}
    pg = PostgresServer().start()
    try:
        for _ in range(args.rounds):
            got = {name: run(pg, co, args) for name, co in reversed(checkouts.items())}
            for name, r in got.items():
                print(show(name, r), flush=True)
            if args.baseline:
                for key, v in got["this"].items():
                    ratios.setdefault(key, []).append(v / got["baseline"][key])
    finally:
        pg.stop()
    for key, vs in ratios.items():
        if key != "load":
            shown = " · ".join(f"{v:.2f}" for v in vs)
            print(f"{key} this / baseline: {shown} (median {statistics.median(vs):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
