"""What an ingest request costs PostgreSQL itself: the service's ingest in process (no HTTP) on a
throwaway PostgreSQL server with ``pg_stat_statements``, the same traffic as ``bench/ingest.py``.

    python bench/ingest_pg_cost.py [--events 15000] [--leads 2000] [--warmup 20] [--senders 1]

It prints, per 100-message batch: the service's CPU (``time.process_time``), PostgreSQL's CPU
(all its processes, from /proc), and each statement's execution time, rows, shared buffers
dirtied and WAL bytes (``pg_stat_statements``, reset after the warm-up batches), and how many
of the leads' updates were HOT (``pg_stat_user_tables``). ``--planning`` adds how often each
statement was planned and the planning's time (``pg_stat_statements.track_planning``; with
``--warmup 0`` it counts the plans every new connection makes). It runs this checkout's
``leadscore``. A harness for finding what to cut, beside ``bench/ingest.py``'s figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
from ingest import make_batches  # noqa: E402
from ingest_profile import bodies  # noqa: E402
from serving import MODEL  # noqa: E402

from leadscore.api import create_app  # noqa: E402
from leadscore.api.limits import Limits  # noqa: E402
from leadscore.service.messages import check_message  # noqa: E402
from leadscore.service.ratelimit import Rate, Settings  # noqa: E402
from leadscore.store import open_engine  # noqa: E402
from leadscore.testing.postgres import PostgresServer  # noqa: E402

_STATEMENTS = """
SELECT calls, total_exec_time, rows, plans, total_plan_time, shared_blks_dirtied, wal_bytes, query
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)
ORDER BY total_exec_time DESC
"""
_TABLES = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
WHERE relname IN ('leads', 'events') ORDER BY relname
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=15_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--warmup", type=int, default=20, help="batches before the counters start")
    ap.add_argument("--senders", type=int, default=1)
    ap.add_argument("--width", type=int, default=110, help="characters of each statement shown")
    ap.add_argument(
        "--explain",
        action="store_true",
        help="also print the plan of each write statement's last run (auto_explain: ANALYZE, "
        "BUFFERS, WAL; slows PostgreSQL down, so its CPU figure is not the normal one)",
    )
    ap.add_argument(
        "--planning",
        action="store_true",
        help="also count each statement's plans and their time (track_planning)",
    )
    args = ap.parse_args()
    batches = make_batches(args.events, args.leads)
    data = bodies(batches)
    extra = "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    if args.planning:
        extra += " -c pg_stat_statements.track_planning=on"
    if args.explain:
        extra = (
            "-c shared_preload_libraries=pg_stat_statements,auto_explain "
            "-c pg_stat_statements.track=all -c auto_explain.log_min_duration=0 "
            "-c auto_explain.log_analyze=on -c auto_explain.log_buffers=on "
            "-c auto_explain.log_wal=on -c auto_explain.log_nested_statements=on"
        )
    pg = PostgresServer(extra=extra).start()
    plans: dict[str, str] = {}
    try:
        url = pg.create_database()
        name = url.rsplit("/", 1)[1]
        admin = psycopg.connect(url, autocommit=True)
        admin.execute("CREATE EXTENSION pg_stat_statements")
        engine = open_engine(url)
        unlimited = Settings(ingest=Rate(0, 0), api=Rate(0, 0), ingest_inflight=0, api_inflight=0)
        app = create_app(engine, deliver=False, limits=Limits(unlimited))
        service = app.state.service
        service.ensure_model(MODEL.read_text(encoding="utf-8"), str(MODEL), "bench")
        todo = list(data)
        lock = threading.Lock()

        def send(limit: int | None) -> None:
            done = 0
            while limit is None or done < limit:
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
                done += 1

        send(args.warmup)
        measured = len(todo)
        admin.execute("SELECT pg_stat_statements_reset()")
        admin.execute("SELECT pg_stat_reset()")
        pg0, cpu0, t0 = pg.cpu_s(), time.process_time(), time.perf_counter()
        threads = [threading.Thread(target=send, args=(None,)) for _ in range(args.senders)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        cpu, pg_cpu = time.process_time() - cpu0, pg.cpu_s() - pg0
        time.sleep(0.6)  # the statistics collector's flush
        admin.execute("SELECT pg_stat_force_next_flush()")
        stats = admin.execute(_STATEMENTS, (name,)).fetchall()
        tables = admin.execute(_TABLES).fetchall()
        engine.dispose()
        admin.close()
        if args.explain:
            assert pg.datadir is not None
            plans = last_plans((pg.datadir.parent / "server.log").read_text(errors="replace"))
    finally:
        pg.stop()
    per = 1000 / measured
    print(
        f"{measured} batches: {measured * 100 / wall:,.0f} events/s; per batch: service CPU "
        f"{cpu * per:.2f} ms, PostgreSQL CPU {pg_cpu * per:.2f} ms"
    )
    total = sum(r[1] for r in stats)
    wal = sum(r[6] for r in stats)
    print(f"statements: {total / measured:.2f} ms and {wal / measured:,.0f} WAL bytes per batch")
    if args.planning:
        plans, plan_ms = sum(r[3] for r in stats), sum(r[4] for r in stats)
        print(f"planning: {plans / measured:.2f} plans and {plan_ms / measured:.3f} ms per batch")
    plan_head = f" {'plans/b':>7} {'plan ms/b':>9}" if args.planning else ""
    print(
        f"{'ms/batch':>8} {'calls/b':>7} {'rows/b':>7}{plan_head} {'dirtied/b':>9} {'WAL B/b':>9}  query"
    )
    for calls, ms, rows, plans, plan_ms, dirtied, wal_bytes, query in stats:
        if ms / measured < 0.01 and plan_ms / measured < 0.01:
            continue
        text = " ".join(query.split())[: args.width]
        planned = f" {plans / measured:7.2f} {plan_ms / measured:9.3f}" if args.planning else ""
        print(
            f"{ms / measured:8.2f} {calls / measured:7.2f} {rows / measured:7.1f}{planned} "
            f"{dirtied / measured:9.2f} {wal_bytes / measured:9,.0f}  {text}"
        )
    for rel, ins, upd, hot in tables:
        print(f"{rel}: {ins} inserted, {upd} updated, of which HOT {hot}")
    for first, plan in plans.items():
        print(f"\n--- {first}\n{plan}")
    return 0


def last_plans(log: str) -> dict[str, str]:
    """The last logged plan of each write statement (by its first words)."""
    out: dict[str, str] = {}
    for chunk in log.split("LOG:  duration: ")[1:]:
        if "Query Text:" not in chunk:
            continue
        text = chunk.split("Query Text:", 1)[1].strip()
        if not text.startswith(("INSERT", "UPDATE", "SELECT lead_id")):
            continue
        out[" ".join(text.split())[:70]] = chunk.strip()[:4000]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
