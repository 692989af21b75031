"""How much memory the service's SQLite connections hold when all of them read a large database.

    python bench/sqlite_memory.py [--mb 250] [--connections 15]

Each connection of the service has a page cache of up to 32 MiB (``CACHE_KIB``), and the pool
may open up to 15 of them. On a database larger than the caches, a connection that reads much of
it (a report, an export, a backfill) fills its cache, and one that is handed out rarely keeps
its pages. The soft heap limit (``HEAP_LIMIT``) holds all of them together to 128 MiB: past it,
a cache reuses its own pages instead of growing.

It fills a database made by ``open_engine`` with about ``--mb`` MB of events, then, in a fresh
process each, has ``--connections`` pooled connections read every event, all checked out at once,
and prints the process's resident memory: once as the service opens them and once with the limit
switched off (``PRAGMA soft_heap_limit=0``), side by side. A figure of memory, not of time.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(path: Path, mb: int) -> None:
    from leadscore.store import open_engine

    open_engine(f"sqlite:///{path}").dispose()
    con = sqlite3.connect(path)
    per_row = 1_000
    rows = mb * 1_000_000 // per_row
    con.executemany(
        "INSERT INTO events (message_id, type, lead_id, event, ts_us, received_at_us, message)"
        " VALUES (?, 'track', ?, 'Email Opened', ?, ?, ?)",
        ((f"m{i}", f"l{i % 5000}", i, i, "x" * per_row) for i in range(rows)),
    )
    con.commit()
    con.close()


def measure(path: Path, connections: int, limited: bool) -> dict[str, float]:
    from leadscore.store import open_engine

    engine = open_engine(f"sqlite:///{path}", migrate=False)
    conns = [engine.connect() for _ in range(connections)]
    if not limited:
        conns[0].exec_driver_sql("PRAGMA soft_heap_limit=0")  # process-wide
    before = rss_mib()
    for conn in conns:
        conn.exec_driver_sql("SELECT count(*), sum(length(message)) FROM events").all()
    after = rss_mib()
    for conn in conns:
        conn.close()
    engine.dispose()
    return {"rss_mib": after, "growth_mib": after - before}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=250)
    ap.add_argument("--connections", type=int, default=15)
    ap.add_argument("--one", choices=["limited", "unlimited"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(Path(a.path), a.connections, a.one == "limited")))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memory.db"
        fill(path, a.mb)
        size = os.path.getsize(path) / 2**20
        print(f"database {size:.0f} MiB, {a.connections} connections each reading every event")
        for one in ("limited", "unlimited"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    one,
                    "--path",
                    str(path),
                    "--connections",
                    str(a.connections),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout)
            label = "as the service opens them" if one == "limited" else "soft heap limit off"
            print(
                f"  {label:27} resident {r['rss_mib']:6.0f} MiB "
                f"(+{r['growth_mib']:.0f} MiB while reading)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
