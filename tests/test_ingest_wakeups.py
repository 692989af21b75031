"""After an ingest commits, the webhook deliverer is woken only when the ingest queued a
notification, and the SLA watch only when a routing file could have set a deadline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.service.facade import Service
from leadscore.service.messages import check_message
from leadscore.service.webhooks import add_webhook
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.handoff_service_helpers import ROUTING
from tests.service_helpers import MODEL, identify, page, track


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    engine = open_engine(f"sqlite:///{tmp_path / 'leadscore.db'}")
    service = Service(engine)
    service.add_model(MODEL, "test")
    yield service
    engine.dispose()


def _checked(svc: Service, *msgs: dict[str, Any]) -> list[Any]:
    at = svc.now_us()
    return [(i, check_message(m, at)) for i, m in enumerate(msgs)]


def test_an_ingest_counts_the_notifications_it_queued_and_wakes_the_sla_watch_only_with_routing(
    svc: Service,
) -> None:
    """The deliverer is woken when an ingest queued a notification, the SLA watch when a
    routing file could have set a deadline: with neither, new MQLs wake nobody."""
    woken: list[str] = []
    svc.on_deadline = lambda: woken.append("sla")
    demo = [identify("u1", {"title": "VP Marketing"}), track("u1", "Demo Requested")]
    first = svc.ingest(_checked(svc, *demo))
    assert (first.new_mqls, first.notified, woken) == (["u1"], 0, [])  # no webhook, no routing

    add_webhook(svc.engine, "https://example.com/hook", ["lead.mql"])
    add_webhook(svc.engine, "https://example.com/other", ["lead.mql"])
    second = svc.ingest(
        _checked(svc, identify("u2", {"title": "VP Marketing"}), track("u2", "Demo Requested"))
    )
    assert (second.new_mqls, second.notified) == (["u2"], 2)  # one per subscribed webhook
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.outbox)).scalar() == 2
    assert woken == []  # still no routing file: no SLA deadline can have been set


def test_with_a_routing_file_a_new_mql_wakes_the_sla_watch(svc: Service) -> None:
    svc.add_routing(ROUTING, "test", "routing.yaml")
    woken: list[str] = []
    svc.on_deadline = lambda: woken.append("sla")
    got = svc.ingest(
        _checked(svc, identify("u9", {"title": "VP Marketing"}), track("u9", "Demo Requested"))
    )
    assert got.new_mqls == ["u9"]
    assert woken == ["sla"]
    quiet = svc.ingest(_checked(svc, page("u10", "/")))  # no MQL: nobody to wake
    assert (quiet.new_mqls, woken) == ([], ["sla"])
