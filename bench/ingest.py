"""Ingest benchmark: 100-event batches into a real `leadscore serve`, against the storage floor.

    python bench/ingest.py [--database sqlite|postgres|both] [--events 50000] [--leads 2000]
                           [--senders 1,2] [--repeat 3] [--processes 1[,2...]]

For each database it starts `leadscore serve` with the starter model (real-time scoring on),
sends Segment batches of 100 messages — the official clients' default shape — from several
sender threads as fast as the server takes them, and reports events/s and the p50/p99 latency
per batch. Side by side, on a fresh database of the same kind, it measures the storage floor:
plain SQLAlchemy inserting the same rows into the same `events` table, 100 rows per
transaction, with the same durability settings and as many senders.

Runs are interleaved — for each repeat and each number of senders, serve then the floor, each on
a fresh database — so that other work on the machine falls on both alike. Beside wall-clock
figures it reports the server's own CPU time per batch (user + system, from /proc), which moves
much less than wall time when the cores are shared, and the load average at each run; "loop" is
the part of that CPU time spent on the event loop's thread (HTTP, the app's middlewares and
routing), the rest being the threadpool's (checking, storing and scoring the messages). On
PostgreSQL it reports the CPU time of PostgreSQL's own processes per batch too (all of them,
from /proc: ``PostgresServer.cpu_s``).
Results go to stdout and bench/results/.

``--processes 1,2`` runs PostgreSQL once with one `leadscore serve` and once with two on one
database (a fresh one each time), the senders spread over the processes as a load balancer
would; SQLite runs one process (one serving process per SQLite file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from serving import LEADSCORE, Serve, env_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's leadscore (the storage floor imports it)

PAGES = ["/", "/blog/lead-scoring-101", "/pricing", "/product", "/case-studies/northwind", "/docs"]
TRACKS = [
    "Email Opened",
    "Email Clicked",
    "Content Downloaded",
    "Webinar Attended",
    "Demo Requested",
]


def make_batches(n_events: int, n_leads: int, seed: int = 1) -> list[list[dict]]:
    """Messages as a website sends them: one identify per lead first, then page views and
    track events as they happen (stamped just before the run), in batches of 100."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    msgs: list[dict] = []
    for i in range(n_leads):
        msgs.append(
            {
                "type": "identify",
                "userId": f"u-{i}",
                "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "timestamp": (now - timedelta(days=91)).isoformat(),
                "traits": {
                    "email": f"person{i}@company{i % 97}.com",
                    "title": rng.choice(
                        ["VP Marketing", "Marketing Manager", "Engineer", "Director of Sales"]
                    ),
                    "country": rng.choice(["US", "GB", "DE", "IN"]),
                    "company": {
                        "employees": rng.choice([20, 150, 800, 3000]),
                        "industry": rng.choice(["Software", "Retail"]),
                    },
                },
            }
        )
    while len(msgs) < n_events:
        lead = f"u-{rng.randrange(n_leads)}"
        ts = None  # live traffic: stamped when sent, in order
        base = {
            "userId": lead,
            "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": ts,
        }
        if rng.random() < 0.6:
            msgs.append(
                {**base, "type": "page", "properties": {"path": rng.choice(PAGES), "title": "x"}}
            )
        else:
            event = rng.choices(TRACKS, weights=[50, 20, 15, 10, 0.5])[0]
            msgs.append({**base, "type": "track", "event": event, "properties": {"campaign": "c1"}})
    return [msgs[i : i + 100] for i in range(0, len(msgs), 100)]


def make_bodies(batches: list[list[dict]]) -> list[bytes]:
    """The batches as the POST bodies a client sends. They are made before the clock starts, as
    a client's queue holds them: each event stamped when it happened, the batch sent a moment
    later."""
    stamp = datetime.now(UTC).isoformat()
    return [
        json.dumps(
            {
                "batch": [m if m.get("timestamp") else {**m, "timestamp": stamp} for m in b],
                "sentAt": stamp,
            }
        ).encode()
        for b in batches
    ]


class Server(Serve):
    """`leadscore serve` of ``checkout`` on ``url`` with a write key of its own; the per-key
    rate limit is off, as it would refuse the load this measures."""

    def __init__(self, url: str, workdir: Path, checkout: Path = ROOT) -> None:
        env = env_for(url, checkout)
        key = subprocess.run(
            [*LEADSCORE, "keys", "create", "--name", "bench", "--scope", "ingest"],
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,
            check=True,
        )
        self.key = key.stdout.strip()
        super().__init__(env, workdir, ["--ingest-rate", "0"])


def run_threads(worker: Callable[[], None], n: int) -> float:
    """Run ``n`` copies of ``worker`` at once; the wall time until the last one ends."""
    threads = [threading.Thread(target=worker) for _ in range(n)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0


def send_all(targets: list[tuple[int, str]], batches: list[list[dict]], senders: int) -> dict:
    """Send every batch; sender ``i`` posts to ``targets[i % len(targets)]`` (port, key)."""
    lock = threading.Lock()
    bodies = make_bodies(batches)
    todo = list(enumerate(bodies))
    latencies: list[float] = []
    failures = 0
    errors: list[str] = []

    turn = iter(range(senders))

    def worker() -> None:
        nonlocal failures
        with lock:
            port, key = targets[next(turn) % len(targets)]
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=60
        ) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    _, body = todo.pop(0)
                t0 = time.perf_counter()
                r = client.post(
                    "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                )
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code != 200:
                        failures += 1
                        if len(errors) < 3:
                            errors.append(f"{r.status_code} {r.text[:300]}")

    wall = run_threads(worker, senders)
    n = sum(len(b) for b in batches)
    latencies.sort()
    return {
        "events": n,
        "seconds": wall,
        "events_per_s": n / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "failures": failures,
        "errors": errors,
    }


def storage_floor(url: str, batches: list[list[dict]], senders: int) -> dict:
    """Plain SQLAlchemy: the same rows into the same events table, 100 per transaction."""
    import sqlalchemy as sa

    from leadscore.store import open_engine
    from leadscore.store.schema import events

    engine = open_engine(url)
    lock = threading.Lock()
    todo = list(batches)
    received = time.time_ns() // 1000

    def rows(batch: list[dict]) -> list[dict]:
        return [
            {
                "message_id": m["messageId"],
                "type": m["type"],
                "lead_id": m.get("userId"),
                "anonymous_id": None,
                "event": m.get("event") or (m["type"] if m["type"] == "page" else None),
                "ts_us": received,
                "received_at_us": received,
                "properties": json.dumps(m.get("properties")),
                "message": json.dumps(m),
            }
            for m in batch
        ]

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                batch = todo.pop(0)
            data = rows(batch)
            with engine.begin() as conn:
                conn.execute(sa.insert(events), data)

    wall = run_threads(worker, senders)
    n = sum(len(b) for b in batches)
    engine.dispose()
    return {"events": n, "seconds": wall, "events_per_s": n / wall}


def serve_once(
    kind: str, batches: list[list[dict]], senders: int, pg: object, checkout: Path, processes: int
) -> dict:
    """``leadscore serve`` of ``checkout`` on a fresh database of ``kind`` (on PostgreSQL,
    ``processes`` of them on that one database, the senders spread over them)."""
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work}/serve.db" if kind == "sqlite" else pg.create_database()  # type: ignore[attr-defined]
        servers: list[Server] = []
        try:
            for _ in range(processes):
                servers.append(Server(url, work, checkout))
            cpu0 = sum(x.cpu_s() for x in servers)
            loop0 = sum(x.cpu_s("loop") for x in servers)
            pg0 = pg.cpu_s() if kind == "postgres" else float("nan")  # type: ignore[attr-defined]
            served = send_all([(x.port, x.key) for x in servers], batches, senders)
            cpu = sum(x.cpu_s() for x in servers) - cpu0
            loop = sum(x.cpu_s("loop") for x in servers) - loop0
            served["server_cpu_ms_per_batch"] = cpu * 1000 / len(batches)
            served["loop_cpu_ms_per_batch"] = loop * 1000 / len(batches)
            pg_cpu = pg.cpu_s() - pg0 if kind == "postgres" else float("nan")  # type: ignore[attr-defined]
            served["postgres_cpu_ms_per_batch"] = pg_cpu * 1000 / len(batches)
        finally:
            for x in servers:
                x.stop()
    return served


def one_round(
    kind: str,
    batches: list[list[dict]],
    senders: int,
    pg: object,
    baseline: Path | None,
    processes: int = 1,
) -> dict:
    """serve (and the baseline's serve), then the floor, each on a fresh database of ``kind``."""
    load = os.getloadavg()[0]
    served = serve_once(kind, batches, senders, pg, ROOT, processes)
    base = serve_once(kind, batches, senders, pg, baseline, processes) if baseline else None
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        url = f"sqlite:///{tmp}/floor.db" if kind == "sqlite" else pg.create_database()  # type: ignore[attr-defined]
        floor = storage_floor(url, batches, senders)
    return {
        "senders": senders,
        "processes": processes,
        "load_average": load,
        "serve": served,
        "baseline": base,
        "floor": floor,
        "floor_ratio": floor["events_per_s"] / served["events_per_s"],
    }


def _pgms(run: dict) -> float:
    return float(run.get("postgres_cpu_ms_per_batch", float("nan")))


def _pg(run: dict) -> str:
    """PostgreSQL's own CPU per batch, for a run on PostgreSQL."""
    ms = _pgms(run)
    return "" if ms != ms else f"  PostgreSQL CPU {ms:5.1f} ms/batch"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--senders", default="1,2", help="comma-separated, e.g. 1,2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--processes",
        default="1",
        help="serve processes on one PostgreSQL database, e.g. 1,2 for runs with each",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of leadscore (e.g. a git worktree of main) whose serve runs "
        "in each round too, interleaved, to measure a change",
    )
    args = ap.parse_args()
    counts = [int(x) for x in str(args.senders).split(",") if x.strip()]
    process_counts = [int(x) for x in str(args.processes).split(",") if x.strip()]
    batches = make_batches(args.events, args.leads)
    results: dict[str, list[dict]] = {}
    pg = None
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    med = statistics.median
    try:
        for kind in kinds:
            if kind == "postgres" and pg is None:
                from leadscore.testing.postgres import PostgresServer

                pg = PostgresServer().start()
            for processes in process_counts if kind == "postgres" else [1]:
                name = kind if processes == 1 else f"{kind} x{processes}"
                for round_no in range(args.repeat):
                    for senders in counts:
                        r = one_round(kind, batches, senders, pg, args.baseline, processes)
                        results.setdefault(name, []).append(r)
                        served, floor, base = r["serve"], r["floor"], r["baseline"]
                        if base is not None:
                            print(
                                f"{name:11} run {round_no + 1} senders {senders}  baseline "
                                f"{base['events_per_s']:7.0f} ev/s  p50 {base['p50_ms']:6.1f} ms  "
                                f"p99 {base['p99_ms']:6.1f} ms  "
                                f"CPU {base['server_cpu_ms_per_batch']:5.1f} ms/batch "
                                f"(loop {base['loop_cpu_ms_per_batch']:4.1f}){_pg(base)}  "
                                f"failures {base['failures']}",
                                flush=True,
                            )
                        print(
                            f"{name:11} run {round_no + 1} senders {senders}  load {r['load_average']:4.1f}  "
                            f"serve {served['events_per_s']:7.0f} ev/s  p50 {served['p50_ms']:6.1f} ms  "
                            f"p99 {served['p99_ms']:6.1f} ms  CPU {served['server_cpu_ms_per_batch']:5.1f} ms/batch "
                            f"(loop {served['loop_cpu_ms_per_batch']:4.1f}){_pg(served)}  "
                            f"failures {served['failures']}  |  floor {floor['events_per_s']:7.0f} ev/s  "
                            f"floor/serve {r['floor_ratio']:.2f}x",
                            flush=True,
                        )
                        for e in served["errors"]:
                            print(f"{'':11} failed: {e}", flush=True)
                for senders in counts:
                    runs = [r for r in results[name] if r["senders"] == senders]
                    print(
                        f"{name:11} senders {senders} median of {len(runs)}: "
                        f"serve {med(r['serve']['events_per_s'] for r in runs):7.0f} ev/s  "
                        f"p50 {med(r['serve']['p50_ms'] for r in runs):6.1f} ms  "
                        f"p99 {med(r['serve']['p99_ms'] for r in runs):6.1f} ms  "
                        f"CPU {med(r['serve']['server_cpu_ms_per_batch'] for r in runs):5.1f} ms/batch "
                        f"(loop {med(r['serve']['loop_cpu_ms_per_batch'] for r in runs):4.1f})"
                        f"{_pg({'postgres_cpu_ms_per_batch': med(_pgms(r['serve']) for r in runs)})}  "
                        f"floor {med(r['floor']['events_per_s'] for r in runs):7.0f} ev/s  "
                        f"floor/serve {med(r['floor_ratio'] for r in runs):.2f}x",
                        flush=True,
                    )
                    if args.baseline:
                        print(
                            f"{name:11} senders {senders} baseline median: "
                            f"{med(r['baseline']['events_per_s'] for r in runs):7.0f} ev/s  "
                            f"p50 {med(r['baseline']['p50_ms'] for r in runs):6.1f} ms  "
                            f"p99 {med(r['baseline']['p99_ms'] for r in runs):6.1f} ms  "
                            f"CPU {med(r['baseline']['server_cpu_ms_per_batch'] for r in runs):5.1f} ms/batch "
                            f"(loop {med(r['baseline']['loop_cpu_ms_per_batch'] for r in runs):4.1f})"
                            f"{_pg({'postgres_cpu_ms_per_batch': med(_pgms(r['baseline']) for r in runs)})}",
                            flush=True,
                        )
    finally:
        if pg is not None:
            pg.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"ingest-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=2, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
