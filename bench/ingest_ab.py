"""The writer's CPU per batch of two checkouts in one process, and whether they store the same.

    python bench/ingest_ab.py --baseline /path/to/a/worktree/of/main [--events 20000] [--leads 2000]

Both checkouts' services (this one's ``leadscore`` and the baseline's, imported under another
name) each get a fresh SQLite file and the same batches of ``bench/ingest.py``'s traffic, one
after the other, batch by batch, each batch with the same received time: other work on the
machine falls on both alike, which two separate runs on shared cores do not give. It prints each
one's CPU time per batch (the thread's, checking and ingesting the messages), their ratio, and
whether the two stored the same leads (traits, stage, scores, parts, MQL instant and reason) and
the same stage history, to the last bit. A harness for changes to the writer, beside the real
server's figures of ``bench/ingest.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from ingest import make_batches  # noqa: E402
from ingest_profile import bodies  # noqa: E402
from serving import MODEL  # noqa: E402

BASE = "leadscore_baseline"
LEADS = (
    "SELECT lead_id, traits, stage, fit, engagement, score, grade, mql, fast_track, rule_sums, "
    "scored_at_us, rescore_at_us, model_version, mql_at_us, mql_reason, owner "
    "FROM leads ORDER BY lead_id"
)
HISTORY = "SELECT lead_id, stage, at_us, reason FROM stage_history ORDER BY lead_id, at_us, id"


def service_of(package: str, db: str) -> tuple[Any, Any, Any]:
    """A service of that package on a fresh SQLite file, the starter model active; its message
    check and engine."""
    api = importlib.import_module(f"{package}.api")
    limits = importlib.import_module(f"{package}.api.limits")
    rate = importlib.import_module(f"{package}.service.ratelimit")
    store = importlib.import_module(f"{package}.store")
    messages = importlib.import_module(f"{package}.service.messages")
    engine = store.open_engine(f"sqlite:///{db}")
    unlimited = rate.Settings(
        ingest=rate.Rate(0, 0), api=rate.Rate(0, 0), ingest_inflight=0, api_inflight=0
    )
    app = api.create_app(engine, deliver=False, limits=limits.Limits(unlimited))
    service = app.state.service
    service.ensure_model(MODEL.read_text(encoding="utf-8"), str(MODEL), "bench")
    return service, messages.check_message, engine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--leads", type=int, default=2_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadscore-ab-") as tmp:
        # the baseline's package under another name: its modules import each other relatively
        (Path(tmp) / BASE).symlink_to(args.baseline.resolve() / "leadscore")
        sys.path.append(tmp)
        sides = {name: service_of(name, f"{tmp}/{name}.db") for name in (BASE, "leadscore")}
        from leadscore.api.server import settle_memory

        settle_memory()
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for k, body in enumerate(bodies(make_batches(args.events, args.leads))):
            received = sides["leadscore"][0].now_us()
            for name in list(sides) if k % 2 == 0 else list(sides)[::-1]:
                service, check, _ = sides[name]
                t0 = time.thread_time()
                batch = json.loads(body)["batch"]
                good = [(i, check(m, received, strict_json=True)) for i, m in enumerate(batch)]
                service.ingest(good, received)
                cpu[name].append(time.thread_time() - t0)
        stored = {}
        for name, (_, _, engine) in sides.items():
            with engine.connect() as conn:
                leads = conn.execute(sa.text(LEADS)).all()
                stored[name] = (leads, conn.execute(sa.text(HISTORY)).all())
            engine.dispose()
    base, this = cpu[BASE], cpu["leadscore"]
    b_ms, t_ms = sum(base) * 1000 / len(base), sum(this) * 1000 / len(this)
    per_batch = statistics.median(t / b for t, b in zip(this, base, strict=True))
    print(
        f"CPU per batch: baseline {b_ms:.2f} ms, this checkout {t_ms:.2f} ms, "
        f"ratio {t_ms / b_ms:.3f} (median per batch {per_batch:.3f})"
    )
    same = stored[BASE] == stored["leadscore"]
    print(
        f"stored the same: {same} ({len(stored[BASE][0])} leads, "
        f"{len(stored[BASE][1])} stage changes)"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
