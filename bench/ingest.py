"""Ingest benchmark: 100-event batches into a real `leadscore serve`, against the storage floor.

    python bench/ingest.py [--database sqlite|postgres|both] [--events 50000] [--leads 2000]
                           [--senders 4] [--processes 1[,2...]]

For each database it starts `leadscore serve` with the starter model (real-time scoring on),
sends Segment batches of 100 messages — the official clients' default shape — from several
sender threads as fast as the server takes them, and reports events/s and the p50/p99 latency
per batch. Side by side, on a fresh database of the same kind, it measures the storage floor:
plain SQLAlchemy inserting the same rows into the same `events` table, 100 rows per
transaction, with the same durability settings. Results go to stdout and bench/results/.

``--processes 1,2`` runs PostgreSQL once with one `leadscore serve` and once with two on one
database (a fresh one each time), the senders spread over the processes as a load balancer
would; SQLite runs one process (one serving process per SQLite file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's leadscore (the storage floor imports it)
MODEL = ROOT / "leadscore" / "templates" / "starter.yaml"
LEADSCORE = [sys.executable, "-m", "leadscore"]

PAGES = ["/", "/blog/lead-scoring-101", "/pricing", "/product", "/case-studies/northwind", "/docs"]
TRACKS = [
    "Email Opened",
    "Email Clicked",
    "Content Downloaded",
    "Webinar Attended",
    "Demo Requested",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class Server:
    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.port = free_port()
        # this checkout's leadscore, whatever is installed
        path = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)
        env = {**os.environ, "LEADSCORE_DATABASE_URL": url, "PYTHONPATH": path}
        key = subprocess.run(
            [*LEADSCORE, "keys", "create", "--name", "bench", "--scope", "ingest"],
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,
            check=True,
        )
        self.key = key.stdout.strip()
        self.proc = subprocess.Popen(
            [
                *LEADSCORE,
                "serve",
                "--model",
                str(MODEL),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError(
            "the server did not start: " + (self.proc.stderr.read() if self.proc.stderr else "")
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


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
    # bodies are made before the clock starts, as a client's queue holds them: each event
    # stamped when it happened, the batch sent a moment later
    stamp = datetime.now(UTC).isoformat()
    bodies = [
        json.dumps(
            {
                "batch": [m if m.get("timestamp") else {**m, "timestamp": stamp} for m in b],
                "sentAt": stamp,
            }
        ).encode()
        for b in batches
    ]
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


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument(
        "--processes",
        default="1",
        help="serve processes on one PostgreSQL database, e.g. 1,2 for one run with each",
    )
    args = ap.parse_args()
    counts = [int(x) for x in args.processes.split(",")]
    batches = make_batches(args.events, args.leads)
    results: dict[str, dict] = {}
    pg = None
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    runs = [(k, n) for k in kinds for n in (counts if k == "postgres" else [1])]
    try:
        for kind, processes in runs:
            with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
                work = Path(tmp)
                if kind == "sqlite":
                    url_server, url_floor = (
                        f"sqlite:///{work}/serve.db",
                        f"sqlite:///{work}/floor.db",
                    )
                else:
                    from leadscore.testing.postgres import PostgresServer

                    pg = pg or PostgresServer().start()
                    url_server, url_floor = pg.create_database(), pg.create_database()
                servers: list[Server] = []
                try:
                    for _ in range(processes):
                        servers.append(Server(url_server, work))
                    served = send_all([(x.port, x.key) for x in servers], batches, args.senders)
                finally:
                    for x in servers:
                        x.stop()
                floor = storage_floor(url_floor, batches, args.senders)
                name = kind if processes == 1 else f"{kind} x{processes}"
                results[name] = {
                    "processes": processes,
                    "serve": served,
                    "floor": floor,
                    "floor_ratio": floor["events_per_s"] / served["events_per_s"],
                }
                print(
                    f"{name:11} leadscore serve: {served['events_per_s']:8.0f} events/s  p50 {served['p50_ms']:6.1f} ms  "
                    f"p99 {served['p99_ms']:6.1f} ms  failures {served['failures']}\n"
                    f"{'':11} storage floor:   {floor['events_per_s']:8.0f} events/s  "
                    f"(the floor is {results[name]['floor_ratio']:.1f}x faster)",
                    flush=True,
                )
                for e in served["errors"]:
                    print(f"{'':11} failed: {e}", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"ingest-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
