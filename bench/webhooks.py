"""The webhook delivery benchmark: how fast MQL notifications reach a fast receiver, and whether
a receiver that never answers slows a healthy one.

    python bench/webhooks.py [--mqls 1000]

Makes ``--mqls`` MQLs on a fresh SQLite database (the service's own ingest), registers a local
receiver that answers at once — and, in a second run, also one that holds every request until
the end — then times the deliverer (its own thread, as `leadscore serve` runs it) until the fast
receiver has every notification. Prints deliveries per second for each run and their ratio
(target: the slow receiver costs the fast one under 1.5x).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leadscore.service.webhooks import Deliverer, add_webhook
from tests.service_helpers import Api, Receiver, identify, track


def run(mqls: int, slow: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        api = Api(f"sqlite:///{tmp}/bench.db")
        release = threading.Event()
        try:
            with Receiver() as fast, Receiver(hold=release) as held:
                add_webhook(api.engine, fast.url, ["lead.mql"])
                if slow:
                    add_webhook(api.engine, held.url, ["lead.mql"])
                for start in range(0, mqls, 100):
                    batch = []
                    for i in range(start, min(start + 100, mqls)):
                        batch += [
                            identify(f"u{i}", {"title": "VP"}),
                            track(f"u{i}", "Demo Requested"),
                        ]
                    api.ok(*batch)
                deliverer = Deliverer(api.engine, poll_s=0.05, timeout_s=60, budget_s=60)
                began = time.perf_counter()
                deliverer.start()
                try:
                    while len(fast.delivered()) < mqls:
                        time.sleep(0.01)
                    took = time.perf_counter() - began
                finally:
                    release.set()
                    deliverer.stop()
        finally:
            api.close()
    return mqls / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqls", type=int, default=1000)
    args = parser.parse_args()
    alone = run(args.mqls, slow=False)
    beside = run(args.mqls, slow=True)
    print(f"fast receiver alone:                {alone:8.1f} deliveries/s")
    print(f"beside one that never answers:      {beside:8.1f} deliveries/s")
    print(f"ratio (alone / beside):             {alone / beside:8.2f}")


if __name__ == "__main__":
    main()
