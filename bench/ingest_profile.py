"""Where an ingest request's time goes, in process: the real app on a fresh SQLite database with
the starter model, driven through ASGI (no sockets, no HTTP parsing) on the event loop `serve`
runs on, or the service alone.

    python bench/ingest_profile.py [--events 10000] [--leads 2000] [--layer app|service|api]
                                   [--profile out.prof] [--senders 1]

``--layer api`` is the app with the ingest thread's part of each request (checking, storing,
scoring) replaced by a fixed answer: what the app alone costs per request (routing,
dependencies, middlewares, the key check, reading and parsing the body, the thread hand-offs).

It sends the same traffic as ``bench/ingest.py`` (``make_batches``) and prints events/s, the
CPU time per 100-message batch (``time.process_time``; the kernel's share apart, and the main
thread's, the event loop's, apart from the other threads'), the context switches per batch
(voluntary: a thread waiting, for the lock, the disk or work; forced: preempted), the read
system calls per batch (SQLite reading pages it does not hold in its cache) and how many
commits group commit made of the requests. ``--profile out.prof`` writes a cProfile of the
event loop's thread, and of the ingest thread's part of each request to ``out.prof.worker`` (one
sender): ``python -m pstats out.prof.worker``. It runs this checkout's ``leadscore``. A harness
for finding what to speed up, not a figure for the docs: those come from ``bench/ingest.py``,
which measures the real server over TCP against the storage floor.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import make_batches  # noqa: E402
from ingest import make_bodies as bodies  # noqa: E402
from serving import MODEL  # noqa: E402

from leadscore.api import create_app  # noqa: E402
from leadscore.api.limits import Limits  # noqa: E402
from leadscore.api.server import event_loop, settle_memory  # noqa: E402
from leadscore.service.auth import create_key  # noqa: E402
from leadscore.service.messages import check_message  # noqa: E402
from leadscore.service.ratelimit import Rate, Settings  # noqa: E402
from leadscore.store import open_engine  # noqa: E402


async def post(app: Any, body: bytes, auth: bytes) -> int:
    """One POST /v1/batch through the ASGI app; the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/batch",
        "raw_path": b"/v1/batch",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", auth),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def thread_times() -> dict[int, float]:
    """CPU seconds (user + system) of each of this process's threads, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def read_calls() -> int:
    """Read system calls this process has made (``/proc/self/io``; 0 where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("syscr:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--layer", choices=["app", "service", "api"], default="app")
    ap.add_argument("--senders", type=int, default=1)
    ap.add_argument("--profile", type=Path)
    args = ap.parse_args()
    batches = make_batches(args.events, args.leads)
    with tempfile.TemporaryDirectory(prefix="leadscore-prof-") as tmp:
        engine = open_engine(f"sqlite:///{tmp}/p.db")
        unlimited = Settings(ingest=Rate(0, 0), api=Rate(0, 0), ingest_inflight=0, api_inflight=0)
        app = create_app(engine, deliver=False, limits=Limits(unlimited))
        service = app.state.service
        service.ensure_model(MODEL.read_text(encoding="utf-8"), str(MODEL), "bench")
        _, key = create_key(engine, "bench", "ingest")
        auth = b"Basic " + base64.b64encode(f"{key}:".encode())
        data = bodies(batches)
        settle_memory()  # as `leadscore serve` does before it serves
        prof = cProfile.Profile() if args.profile else None
        failures = 0

        todo = list(data)

        async def app_sender() -> None:
            nonlocal failures
            while todo:
                failures += await post(app, todo.pop(0), auth) != 200

        async def app_run() -> None:
            await asyncio.gather(*(app_sender() for _ in range(args.senders)))

        lock = threading.Lock()

        def service_sender() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    body = todo.pop(0)
                received = service.now_us()
                msgs = json.loads(body)["batch"]
                good = [
                    (i, check_message(m, received, strict_json=True)) for i, m in enumerate(msgs)
                ]
                service.ingest(good, received)

        if args.layer == "api":
            from fastapi.responses import JSONResponse

            import leadscore.api.ingest as api_ingest

            def answered(request: Any, row: Any, body: Any, batch: list[Any], _: Any) -> Any:
                return JSONResponse(
                    {"success": True, "accepted": len(batch), "duplicates": 0, "rejected": []}
                )

            api_ingest._ingest = answered  # type: ignore[assignment]
        worker_prof = cProfile.Profile() if args.profile and args.layer == "app" else None
        if worker_prof is not None:
            # the ingest thread's part of each request, profiled where it runs (one sender)
            import leadscore.api.ingest as api_ingest

            plain = api_ingest._ingest

            def profiled(*a: Any, **k: Any) -> Any:
                worker_prof.enable()
                try:
                    return plain(*a, **k)
                finally:
                    worker_prof.disable()

            api_ingest._ingest = profiled  # type: ignore[assignment]
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        main_tid = threading.get_native_id()
        tt0 = thread_times()
        reads0 = read_calls()
        cpu0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        if args.layer in ("app", "api") and event_loop() == "uvloop":
            import uvloop  # the loop `serve` runs on

            uvloop.run(app_run())
        elif args.layer in ("app", "api"):
            asyncio.run(app_run())
        elif args.senders == 1:  # on this thread, where cProfile sees it
            service_sender()
        else:
            threads = [threading.Thread(target=service_sender) for _ in range(args.senders)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        if prof:
            prof.disable()
            prof.dump_stats(args.profile)
            if worker_prof is not None and args.layer == "app":
                worker_prof.dump_stats(f"{args.profile}.worker")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        tt1 = thread_times()
        reads = (read_calls() - reads0) / len(batches)
        system_ms = (ru1.ru_stime - ru0.ru_stime) * 1000 / len(batches)
        groups = service._ingests.groups, service._ingests.calls  # group commit's counts
        engine.dispose()
    n = sum(len(b) for b in batches)
    per = 1000 / len(batches)
    main_ms = (tt1.get(main_tid, 0) - tt0.get(main_tid, 0)) * per
    switches = (ru1.ru_nvcsw - ru0.ru_nvcsw) / len(batches)
    forced = (ru1.ru_nivcsw - ru0.ru_nivcsw) / len(batches)
    print(
        f"{args.layer}: {n / wall:,.0f} events/s, CPU {cpu * per:.2f} ms/batch "
        f"({system_ms:.2f} in the kernel; main thread {main_ms:.1f}, others "
        f"{cpu * per - main_ms:.1f}), context switches per batch {switches:.1f} "
        f"(+{forced:.1f} forced), read calls per batch {reads:.0f}, "
        f"failures {failures}, {groups[1]} requests written in {groups[0]} commits"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
