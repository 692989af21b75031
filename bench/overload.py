"""Overload benchmark: many concurrent senders against a real `leadscore serve` on 127.0.0.1,
and the same server at normal load, side by side.

    python bench/overload.py [--senders 200] [--seconds 60] [--normal-senders 2]
                             [--normal-seconds 20] [--keys 8] [--batch 100] [--padding 1500]
                             [--hostile] [--webhook none|hanging] [--serve-arg=--ingest-inflight=0 …]

Each phase starts a fresh `leadscore serve` (SQLite, the starter model, real-time scoring) and
runs for a bounded time: ``--normal-senders`` senders for ``--normal-seconds`` (the baseline),
then ``--senders`` senders for ``--seconds`` (the overload). Every sender posts Segment batches
of ``--batch`` messages (each padded with ``--padding`` bytes of properties, so bodies weigh
what real ones do) back to back, spread over ``--keys`` write keys. A sender that is answered
429 or 503 waits what ``Retry-After`` says, as the Segment client does; ``--hostile`` senders
come back after 10 ms instead. Every batch makes one new MQL, so with ``--webhook hanging``
the service has a notification to deliver per batch, to a receiver that accepts and never
answers.

Recorded per phase: the serve process's RSS over time (sampled every 0.25 s from /proc),
answers by status, and the p50/p99 latency of accepted batches. Results go to stdout (a
Markdown table) and bench/results/overload.json. Run it on 127.0.0.1 only; it needs Linux's
/proc for RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from serving import Serve, env_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "overload.json"
sys.path.insert(0, str(ROOT))


class Hanging:
    """A webhook receiver that accepts connections and reads, but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        for c in self.held:
            c.close()
        self.sock.close()


class Fast:
    """A webhook receiver that answers 200 at once."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(workdir: Path, keys: int, serve_args: list[str], webhook: str | None) -> Serve:
    """A fresh `leadscore serve` of this checkout on SQLite with ``keys`` write keys."""
    env = env_for(f"sqlite:///{workdir / 'ls.db'}")
    from leadscore.service.auth import create_key
    from leadscore.service.webhooks import add_webhook
    from leadscore.store import open_engine

    engine = open_engine(env["LEADSCORE_DATABASE_URL"])
    serve_keys = [create_key(engine, f"k{i}", "ingest")[1] for i in range(keys)]
    if webhook:
        add_webhook(engine, webhook, ["lead.mql"])
    engine.dispose()
    serve = Serve(env, workdir, serve_args, log_level="error")
    serve.keys = serve_keys  # type: ignore[attr-defined]
    return serve


_TOKEN = "@@@@@@@@@@@@"  # replaced in each body by a fresh one: unique ids, cheaply


def template(batch: int, padding: int) -> bytes:
    """A batch as a website sends it: page views with properties, and one new lead that asks
    for a demo (an MQL, so a webhook has something to deliver). Its ids hold ``_TOKEN``."""
    now = datetime.now(UTC).isoformat()
    lead = f"lead-{_TOKEN}"
    pad = "x" * padding
    msgs: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": lead,
            "messageId": f"{_TOKEN}-0",
            "timestamp": now,
            "traits": {"title": "VP Marketing", "company": {"employees": 800}},
        },
        {
            "type": "track",
            "userId": lead,
            "event": "Demo Requested",
            "messageId": f"{_TOKEN}-1",
            "timestamp": now,
        },
    ]
    while len(msgs) < batch:
        msgs.append(
            {
                "type": "page",
                "userId": lead,
                "messageId": f"{_TOKEN}-{len(msgs)}",
                "timestamp": now,
                "properties": {"path": "/docs", "referrer": pad},
            }
        )
    return json.dumps({"batch": msgs, "sentAt": now}).encode()


def body(tpl: bytes) -> bytes:
    return tpl.replace(_TOKEN.encode(), uuid.uuid4().hex[:12].encode())


async def drive(
    serve: Serve, senders: int, seconds: float, batch: int, padding: int, hostile: bool
) -> dict[str, Any]:
    tpl = template(batch, padding)
    statuses: Counter[str] = Counter()
    accepted: list[float] = []
    # a client (and connection) of its own per sender, made before the clock starts, as
    # separate machines would have: one shared pool of hundreds of connections costs the
    # generator more than the server
    clients = [
        httpx.AsyncClient(
            base_url=serve.base, timeout=60, auth=(serve.keys[i % len(serve.keys)], "")
        )
        for i in range(senders)
    ]
    end = time.monotonic() + seconds

    async def sender(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end:
            data = body(tpl)
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    "/v1/batch", content=data, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as e:
                statuses[type(e).__name__] += 1
                await asyncio.sleep(0.1)
                continue
            dt = time.perf_counter() - t0
            statuses[str(r.status_code)] += 1
            if r.status_code == 200:
                accepted.append(dt)
            elif r.status_code in (429, 503):
                wait = 0.01 if hostile else float(r.headers.get("Retry-After", "1"))
                await asyncio.sleep(min(wait, max(end - time.monotonic(), 0)))

    try:
        await asyncio.gather(*(sender(c) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    accepted.sort()

    def pct(p: float) -> float | None:
        return (
            round(accepted[min(len(accepted) - 1, int(len(accepted) * p))] * 1000, 1)
            if accepted
            else None
        )

    return {
        "answers": dict(statuses),
        "accepted_batches": len(accepted),
        "events_per_s": round(len(accepted) * batch / seconds, 1),
        "p50_ms": round(statistics.median(accepted) * 1000, 1) if accepted else None,
        "p99_ms": pct(0.99),
    }


def phase(
    name: str, senders: int, seconds: float, args: argparse.Namespace, webhook: str | None
) -> dict[str, Any]:
    print(f"{name}: {senders} senders for {seconds:g} s …", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="leadscore-overload-") as tmp:
        serve = start(Path(tmp), args.keys, args.serve_arg, webhook)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                try:
                    samples.append((round(time.monotonic() - t0, 2), round(serve.rss_mb(), 1)))
                except OSError:
                    return
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            got = asyncio.run(
                drive(serve, senders, seconds, args.batch, args.padding, args.hostile)
            )
            time.sleep(1.0)  # what the server holds once the load has stopped
        finally:
            stop.set()
            sampler.join()
            serve.stop()
    rss = [r for _, r in samples]
    got.update(
        phase=name,
        senders=senders,
        seconds=seconds,
        rss_start_mb=rss[0] if rss else None,
        rss_max_mb=max(rss) if rss else None,
        rss_end_mb=rss[-1] if rss else None,
        rss_every_5s=[r for t, r in samples if abs(t - round(t / 5) * 5) < 0.13],
    )
    return got


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--senders", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--normal-senders", type=int, default=2)
    ap.add_argument("--normal-seconds", type=float, default=20)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--padding", type=int, default=1500)
    ap.add_argument("--hostile", action="store_true", help="ignore Retry-After")
    ap.add_argument("--webhook", choices=["none", "fast", "hanging"], default="none")
    ap.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="a `leadscore serve` option, e.g. --serve-arg=--ingest-inflight=0 (repeatable)",
    )
    ap.add_argument("--only", choices=["normal", "overload", "both"], default="both")
    args = ap.parse_args()
    args.serve_arg = [a for arg in args.serve_arg for a in arg.split("=", 1)]

    receiver = {"none": None, "fast": Fast, "hanging": Hanging}[args.webhook]
    receiver = receiver() if receiver else None
    webhook = receiver.url if receiver else None
    results = []
    try:
        if args.only in ("normal", "both"):
            results.append(phase("normal", args.normal_senders, args.normal_seconds, args, webhook))
        if args.only in ("overload", "both"):
            results.append(phase("overload", args.senders, args.seconds, args, webhook))
    finally:
        if receiver:
            receiver.close()

    print(
        f"\nbatch {args.batch} messages (~{len(template(args.batch, args.padding)) // 1024} KB), "
        f"{args.keys} keys, webhook {args.webhook}, {'hostile' if args.hostile else 'polite'} "
        f"senders, serve options {' '.join(args.serve_arg) or '(defaults)'}\n"
    )
    print(
        "| phase | senders | s | accepted batches | events/s | p50 ms | p99 ms | 429 | 503 | "
        "other | RSS start / max / end MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        a = r["answers"]
        other = sum(v for k, v in a.items() if k not in ("200", "429", "503"))
        print(
            f"| {r['phase']} | {r['senders']} | {r['seconds']:g} | {r['accepted_batches']:,} | "
            f"{r['events_per_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | {a.get('429', 0):,} | "
            f"{a.get('503', 0):,} | {other:,} | {r['rss_start_mb']} / {r['rss_max_mb']} / "
            f"{r['rss_end_mb']} |"
        )
    for r in results:
        print(f"RSS every 5 s, {r['phase']}: {r['rss_every_5s']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"args": {k: v for k, v in vars(args).items()}, "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
