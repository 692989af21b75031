"""Two `leadscore serve` side by side, the same batches sent to both in alternating chunks:
this checkout's and another's (``--baseline``), each on a fresh SQLite file.

    python bench/ingest_interleaved.py --baseline /path/to/a/worktree/of/main
                                       [--events 40000] [--chunk 20] [--senders 1]

``bench/ingest.py`` runs each server for a whole round (a few seconds) after the other, and on a
machine whose speed swings from minute to minute a round's ratio moves by a third. Here both
servers run the whole time and take turns every ``--chunk`` batches (the order swapped at every
turn), so both see the same minute: small differences (a tenth of a millisecond of the event
loop's CPU per batch) show. Per server it prints events/s (sent batches over the time spent
sending them), the p50 and p99 per batch, the server's CPU per batch and the event loop's share
(its main thread's, from ``/proc``), of which the kernel's. A harness for comparing two
versions; the storage floor and the targets are ``bench/ingest.py``'s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from ingest import Server, make_batches, make_bodies

ROOT = Path(__file__).resolve().parent.parent


def loop_kernel_s(server: Server) -> float:
    """The kernel's share of the server's main thread's CPU so far, in seconds."""
    pid = server.proc.pid
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--chunk", type=int, default=20, help="batches per turn")
    ap.add_argument("--senders", type=int, default=1)
    args = ap.parse_args()
    bodies = make_bodies(make_batches(args.events, args.leads))
    names = ("this", "baseline")
    lat: dict[str, list[float]] = {n: [] for n in names}
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    loop = dict.fromkeys(names, 0.0)
    kernel = dict.fromkeys(names, 0.0)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="leadscore-ab-") as tmp:
        servers: dict[str, Server] = {}
        try:
            for name, checkout in zip(names, (ROOT, args.baseline), strict=True):
                work = Path(tmp) / name
                work.mkdir()
                servers[name] = Server(f"sqlite:///{work}/serve.db", work, checkout)
            clients = {
                n: [
                    httpx.Client(
                        base_url=f"http://127.0.0.1:{s.port}", auth=(s.key, ""), timeout=60
                    )
                    for _ in range(args.senders)
                ]
                for n, s in servers.items()
            }

            def send(name: str, client: httpx.Client, part: list[bytes]) -> None:
                for body in part:
                    t0 = time.perf_counter()
                    r = client.post(
                        "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                    )
                    lat[name].append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        failures.append(f"{name}: {r.status_code} {r.text[:200]}")

            for turn, i in enumerate(range(0, len(bodies), args.chunk)):
                part = bodies[i : i + args.chunk]
                for name in names if turn % 2 == 0 else names[::-1]:
                    s = servers[name]
                    c0, l0, k0 = s.cpu_s(), s.cpu_s("loop"), loop_kernel_s(s)
                    threads = [
                        threading.Thread(
                            target=send, args=(name, clients[name][k], part[k :: args.senders])
                        )
                        for k in range(args.senders)
                    ]
                    w0 = time.perf_counter()
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
                    wall[name] += time.perf_counter() - w0
                    cpu[name] += s.cpu_s() - c0
                    loop[name] += s.cpu_s("loop") - l0
                    kernel[name] += loop_kernel_s(s) - k0
        finally:
            for s in servers.values():
                s.proc.terminate()
                s.proc.wait()
    for name in names:
        got = sorted(lat[name])
        n = len(got)
        print(
            f"{name:8s} {100 * n / wall[name]:7,.0f} events/s  p50 {statistics.median(got) * 1000:5.1f} ms  "
            f"p99 {got[min(n - 1, int(n * 0.99))] * 1000:5.1f} ms  CPU {cpu[name] * 1000 / n:5.2f} ms/batch "
            f"(loop {loop[name] * 1000 / n:4.2f}, of which kernel {kernel[name] * 1000 / n:4.2f})"
        )
    print(f"load average {os.getloadavg()[0]:.1f}; failures {len(failures)}", *failures[:3])
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
