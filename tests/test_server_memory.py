"""`leadscore serve` sets aside what it made before serving from Python's cycle collector, and
collects the youngest generation less often (``api/server.py: settle_memory``)."""

from __future__ import annotations

import gc

from leadscore.api.server import settle_memory


def test_what_exists_before_serving_is_frozen_and_young_objects_are_collected_less_often():
    before = gc.get_threshold()
    try:
        kept = [{"made": i} for i in range(1000)]  # lives as long as the process would
        settle_memory(young=1234)
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (1234, before[1], before[2])
        # what is made afterwards is collected as before: a cycle left behind goes away
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
