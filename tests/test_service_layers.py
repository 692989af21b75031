"""The HTTP layer over the service: nothing blocks the event loop, the OpenAPI schema shows how
to authenticate, errors come from one table."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.service_helpers import (
    MODEL,
    Api,
    api_on,
    assert_error,
    bearer,
    identify,
    page,
)


def test_health_answers_while_an_activation_runs(tmp_path: Path) -> None:
    """PUT /api/models re-scores every lead in the threadpool: while it is held inside its
    transaction, /health still answers on the same event loop."""
    with api_on(f"sqlite:///{tmp_path / 'leadscore.db'}") as api:
        for i in range(0, 300, 100):
            api.ok(*(identify(f"u{j}", {"title": "VP"}) for j in range(i, i + 100)))
            api.ok(*(page(f"u{j}", "/pricing") for j in range(i, i + 100)))
        inside, release = threading.Event(), threading.Event()

        def hold(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
            # the activation's first write inside its transaction: hold it there
            if statement.lstrip().upper().startswith("UPDATE MODELS") and not release.is_set():
                inside.set()
                release.wait()

        sa.event.listen(api.engine, "before_cursor_execute", hold)
        answers: dict[str, Any] = {}
        with api.client as client:  # one event loop for every request below

            def put() -> None:
                answers["put"] = client.put(
                    "/api/models",
                    content=MODEL.replace("threshold: 50", "threshold: 40"),
                    headers={**bearer(api.admin_token), "Content-Type": "text/yaml"},
                )

            def health() -> None:
                answers["health"] = client.get("/health")

            putter = threading.Thread(target=put)
            putter.start()
            assert inside.wait(60), "the activation never reached its transaction"
            checker = threading.Thread(target=health)
            checker.start()
            checker.join(60)  # a blocked event loop would hold it until the release below
            done_before_release = "health" in answers
            put_done_before = "put" in answers
            release.set()
            putter.join(60)
            checker.join(60)
        sa.event.remove(api.engine, "before_cursor_execute", hold)
        assert done_before_release, "GET /health waited for the activation"
        assert not put_done_before  # the activation was still running when health answered
        assert answers["health"].status_code == 200
        assert answers["put"].status_code == 201, answers["put"].text
        assert answers["put"].json()["leads_rescored"] == 300


def test_openapi_shows_security_schemes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    kinds = {(s["type"], s.get("scheme")) for s in schemes.values()}
    assert ("http", "basic") in kinds and ("http", "bearer") in kinds
    batch = spec["paths"]["/v1/batch"]["post"]
    assert {next(iter(s)) for s in batch["security"]} == set(schemes)
    leads = spec["paths"]["/api/leads"]["get"]
    assert [next(iter(s)) for s in leads["security"]] == [
        name for name, s in schemes.items() if s.get("scheme") == "bearer"
    ]
    # response models: a lead list names its leads' fields
    ok = leads["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/LeadList")
    assert "ErrorBody" in spec["components"]["schemas"]


def test_missing_model_version_is_404(api: Api) -> None:
    resp = api.client.post("/api/models/999/activate", headers=bearer(api.admin_token))
    err = assert_error(resp, 404, "not_found")
    assert "999" in err["message"]
