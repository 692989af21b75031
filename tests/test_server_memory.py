"""`leadscore serve` sets aside what it made before serving from Python's cycle collector, and
collects the youngest generation less often (``api/server.py: settle_memory``)."""

from __future__ import annotations

import gc
import weakref

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


def test_activating_model_after_model_keeps_memory_bounded(tmp_path):
    """A service whose model is activated often: nothing is frozen after start (the freeze
    count does not grow with activations), and the models it replaced are collected but for the
    few most recent, which a write may still read under another process's activation; one
    dropped is parsed again from the store when asked for."""
    from leadscore.service.facade import Service
    from leadscore.service.versions import StoredVersions
    from leadscore.store import open_engine
    from tests.handoff_helpers import ISSUE_EXAMPLE
    from tests.service_helpers import MODEL

    svc = Service(open_engine(f"sqlite:///{tmp_path / 'leadscore.db'}"))
    first = svc.add_model(MODEL, "test")["version"]
    svc.add_routing(ISSUE_EXAMPLE, "test")
    before = gc.get_threshold()
    try:
        settle_memory()  # once, as `leadscore serve` does before it serves
        frozen = gc.get_freeze_count()
        models, routings = [], []
        for i in range(3 * StoredVersions.KEEP):
            svc.add_model(MODEL.replace("name: service-test", f"name: v{i}"), "test")
            models.append(weakref.ref(svc.active))
            svc.add_routing(ISSUE_EXAMPLE, "test")
            routings.append(weakref.ref(svc.routing))
        gc.collect()
        assert gc.get_freeze_count() <= frozen
        for refs in (models, routings):
            kept = [r() for r in refs if r() is not None]
            assert len(kept) <= StoredVersions.KEEP, len(kept)
        assert models[-1]() is svc.active and routings[-1]() is svc.routing
        # versions long replaced are still there to read: the SLA watcher asks the routing
        # that assigned an episode, and a write the version another process activated
        assert svc._routing.version(1) is not None
        assert svc._models.of(first).version == first
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
