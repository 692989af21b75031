"""The HTTP layer alone: the server's CPU per request for each protocol and event loop uvicorn can
run `leadscore serve` with, in front of an app that does nothing.

    python bench/http_protocol.py [--requests 3000] [--repeat 2]

A uvicorn server in its own process answers POST /v1/batch with a fixed ingest answer after
reading the body; one keep-alive client posts a Segment batch of 100 messages (about 19 KB, as
``bench/ingest.py`` sends) ``--requests`` times. It reports the server's CPU time per request
(user + system, from /proc) and the wall time per request, for uvicorn's h11 protocol and for
the one ``serve`` runs (``leadscore.api.server.Protocol``, httptools), each on asyncio's loop
and on uvloop (where installed), interleaved ``--repeat`` times. What the app costs on top
(routing, middlewares, the threadpool) and the service's work are not in these figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from serving import free_port

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import sys

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from leadscore.api.server import Protocol

protocol, loop, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ANSWER = b'{"success":true,"accepted":100,"duplicates":0,"rejected":[]}'


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(ANSWER)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


uvicorn.run(
    app,
    host="127.0.0.1",
    port=port,
    http=Protocol if protocol == "httptools" else H11Protocol,
    loop=loop,
    log_level="warning",
    access_log=False,
    lifespan="off",
)
"""


def body() -> bytes:
    messages = [
        {
            "type": "track",
            "userId": f"u-{i}",
            "event": "Email Opened",
            "messageId": f"{i:036d}",
            "timestamp": "2026-12-06T19:00:00+00:00",
            "properties": {"campaign": "c1"},
        }
        for i in range(100)
    ]
    return json.dumps({"batch": messages, "sentAt": "2026-12-06T19:00:01+00:00"}).encode()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(protocol: str, loop: str, data: bytes, requests: int) -> tuple[float, float]:
    """The server's CPU ms and the wall ms per request."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen([sys.executable, "-c", SERVER, protocol, loop, str(port)], env=env)
    try:
        headers = {"Content-Type": "application/json", "Authorization": "Basic a2V5Og=="}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(200):
                try:
                    client.post("/v1/batch", content=data, headers=headers)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            for _ in range(100):  # warm up
                client.post("/v1/batch", content=data, headers=headers)
            cpu0, t0 = cpu_s(proc.pid), time.perf_counter()
            for _ in range(requests):
                client.post("/v1/batch", content=data, headers=headers)
            wall, cpu = time.perf_counter() - t0, cpu_s(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(30)
    return cpu * 1000 / requests, wall * 1000 / requests


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
    combos = [(p, lp) for lp in loops for p in ("h11", "httptools")]
    data = body()
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {c: [] for c in combos}
    for round_no in range(args.repeat):
        for protocol, loop in combos:
            cpu, wall = one_run(protocol, loop, data, args.requests)
            runs[(protocol, loop)].append((cpu, wall))
            print(
                f"run {round_no + 1}  {protocol:9} on {loop:7}  server CPU {cpu:.3f} ms/request  "
                f"wall {wall:.3f} ms/request  (body {len(data):,} bytes, load "
                f"{os.getloadavg()[0]:.1f})",
                flush=True,
            )
    for (protocol, loop), got in runs.items():
        print(
            f"median  {protocol:9} on {loop:7}  server CPU "
            f"{statistics.median(c for c, _ in got):.3f} ms/request  "
            f"wall {statistics.median(w for _, w in got):.3f} ms/request",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
