"""Which tables and indexes the pages of an ingest batch's commit belong to, on SQLite.

    python bench/ingest_pages.py [--events 30000] [--leads 2000] [--every 50]

It drives the service alone (as ``bench/ingest_profile.py --layer service`` does, one sender)
on a fresh SQLite file with ``bench/ingest.py``'s traffic, and after each batch reads the frames
its commit appended to the write-ahead log: each frame names the page it holds. Every
``--every`` batches it maps page numbers to b-trees with SQLite's ``dbstat`` table, and at the
end prints, per stretch of the run, the pages per batch of each table and index (a page written
twice in one commit counts once). A harness for finding what an ingest writes, not a figure of
speed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import make_batches  # noqa: E402
from ingest_profile import bodies  # noqa: E402
from serving import MODEL  # noqa: E402

from leadscore.api import create_app  # noqa: E402
from leadscore.api.limits import Limits  # noqa: E402
from leadscore.service.messages import check_message  # noqa: E402
from leadscore.service.ratelimit import Rate, Settings  # noqa: E402
from leadscore.store import open_engine  # noqa: E402

WAL_HEADER, FRAME_HEADER = 32, 24


class WalReader:
    """The pages of the frames appended to a write-ahead log since the last call."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.salts = b""
        self.end = WAL_HEADER

    def new_pages(self) -> set[int]:
        with open(self.path, "rb") as f:
            data = f.read()
        if len(data) < WAL_HEADER:
            return set()
        page_size = struct.unpack(">I", data[8:12])[0]
        salts = data[16:24]
        if salts != self.salts:  # the log was restarted after a checkpoint
            self.salts, self.end = salts, WAL_HEADER
        pages: set[int] = set()
        pos = self.end
        while pos + FRAME_HEADER + page_size <= len(data):
            pgno, _ = struct.unpack(">II", data[pos : pos + 8])
            if data[pos + 8 : pos + 16] != salts:
                break  # an older generation's frame
            pages.add(pgno)
            pos += FRAME_HEADER + page_size
        self.end = pos
        return pages


def owners(db: str) -> dict[int, str]:
    """Page number → the table or index it belongs to."""
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--leads", type=int, default=2_000)
    ap.add_argument("--every", type=int, default=50, help="batches per stretch")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadscore-pages-") as tmp:
        db = f"{tmp}/p.db"
        engine = open_engine(f"sqlite:///{db}")
        unlimited = Settings(ingest=Rate(0, 0), api=Rate(0, 0), ingest_inflight=0, api_inflight=0)
        app = create_app(engine, deliver=False, limits=Limits(unlimited))
        service = app.state.service
        service.ensure_model(MODEL.read_text(encoding="utf-8"), str(MODEL), "bench")
        wal = WalReader(db + "-wal")
        wal.new_pages()
        stretch: list[set[int]] = []
        rows: list[tuple[int, int, collections.Counter[str]]] = []
        for k, body in enumerate(bodies(make_batches(args.events, args.leads)), 1):
            received = service.now_us()
            msgs = json.loads(body)["batch"]
            good = [(i, check_message(m, received, strict_json=True)) for i, m in enumerate(msgs)]
            service.ingest(good, received)
            stretch.append(wal.new_pages())
            if k % args.every == 0:
                where = owners(db)
                count: collections.Counter[str] = collections.Counter()
                for pages in stretch:
                    count.update(where.get(p, "(free or new)") for p in pages)
                rows.append((k - len(stretch) + 1, k, count))
                stretch = []
        engine.dispose()
    names = sorted({n for _, _, c in rows for n in c}, key=lambda n: -rows[-1][2][n])
    width = max(len(n) for n in names) + 2
    print(
        "pages per batch, batches:".ljust(width) + "".join(f"{f}-{x}".rjust(10) for f, x, _ in rows)
    )
    for name in [*names, "total"]:
        cells = [
            (sum(c.values()) if name == "total" else c[name]) / (x - f + 1) for f, x, c in rows
        ]
        print(name.ljust(width) + "".join(f"{v:.1f}".rjust(10) for v in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
