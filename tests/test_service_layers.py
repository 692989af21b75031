"""The HTTP layer over the service: nothing blocks the event loop, the OpenAPI schema shows how
to authenticate, errors come from one table."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from leadscore.store import schema as t
from tests.service_helpers import (
    MODEL,
    US,
    Api,
    ago,
    api_on,
    assert_error,
    bearer,
    identify,
    page,
    track,
)

DAY_US = 86400 * US


def test_health_answers_while_an_activation_runs(service_db_url: str) -> None:
    """PUT /api/models re-scores every lead in the threadpool: while it is held inside its
    transaction, /health still answers on the same event loop."""
    with api_on(service_db_url) as api:
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


def _crowd(api: Api, n: int = 60) -> None:
    """Leads with scores spread out: fit from titles, engagement from page counts, some fast-tracked."""
    titles = ["VP Sales", "Engineer", "Head of IT", "Director", ""]
    msgs: list[dict[str, Any]] = []
    for i in range(n):
        msgs.append(identify(f"p{i:03}", {"title": titles[i % 5], "email": f"p{i}@x.io"}))
        msgs += [page(f"p{i:03}", "/pricing") for _ in range(i % 4)]
        msgs += [page(f"p{i:03}", "/docs") for _ in range(i % 3)]
        if i % 11 == 0:
            msgs.append(track(f"p{i:03}", "Demo Requested", timestamp=ago(3)))
        if i % 13 == 0:  # an event in the future: the lead comes due before we read
            msgs.append(track(f"p{i:03}", "Webinar Attended", timestamp=ago(-0.5)))
    api.ok(*msgs)


def _reference(api: Api, at: int, field: str, reverse: bool, **f: Any) -> list[str]:
    """Every lead scored at ``at``, filtered and sorted in Python: what paging must agree with."""
    with api.engine.connect() as conn:
        rows = conn.execute(sa.select(t.leads)).all()
    views = [api.service.lead_view(r, at) for r in rows]
    if f.get("min_score") is not None:
        views = [v for v in views if v["score"] >= f["min_score"]]
    if f.get("stage"):
        views = [v for v in views if v["stage"] == f["stage"]]
    column = {"mql_at": "mql_at_us", "updated_at": "updated_at_us"}.get(field)
    exact = {r.lead_id: r for r in rows}
    present = [v for v in views if v.get(field) is not None]
    missing = sorted(
        (v for v in views if v.get(field) is None), key=lambda v: v["lead_id"], reverse=reverse
    )
    present.sort(
        key=lambda v: (getattr(exact[v["lead_id"]], column) if column else v[field], v["lead_id"]),
        reverse=reverse,
    )
    return [v["lead_id"] for v in present + missing]


def test_paging_in_sql_agrees_with_scoring_every_lead(api: Api) -> None:
    _crowd(api)
    later = api.service.now_us() + 20 * DAY_US  # decay and the future events change the order
    cases = [
        ("-score", {}),
        ("-engagement", {}),
        ("-score", {"min_score": 20}),
        ("-score", {"stage": "lead"}),
        ("score", {}),
        ("lead_id", {}),
        ("-lead_id", {"stage": "mql"}),
        ("fit", {}),
        ("-updated_at", {}),
        ("mql_at", {}),
        ("-mql_at", {}),
    ]
    for sort, filters in cases:
        want = _reference(api, later, sort.lstrip("-"), sort.startswith("-"), **filters)
        for limit, offset in [(1, 0), (5, 0), (7, 3), (50, 10), (1000, 0)]:
            got = api.service.leads(at=later, sort=sort, limit=limit, offset=offset, **filters)
            assert got["total"] == len(want), (sort, filters)
            assert [x["lead_id"] for x in got["leads"]] == want[offset : offset + limit], (
                sort,
                filters,
                limit,
                offset,
            )


def test_limit_one_reads_one_leads_worth(api: Api) -> None:
    # 200 leads, each with a demo request a little older than the last: distinct scores
    msgs: list[dict[str, Any]] = []
    for i in range(200):
        msgs.append(identify(f"d{i:03}", {"title": "VP Sales"}))
        msgs.append(track(f"d{i:03}", "Demo Requested", timestamp=ago(0.2 * i)))
    api.ok(*msgs)
    for sort in ("-score", "-engagement", "lead_id", "-updated_at"):
        stats: dict[str, int] = {}
        got = api.service.leads(sort=sort, limit=1, stats=stats)
        assert got["total"] == 200 and len(got["leads"]) == 1
        # the page and, sorting by a decaying value, the next lead: nothing below can enter
        assert stats["rows_read"] <= 2, (sort, stats)
    assert api.service.leads(sort="-score", limit=1)["leads"][0]["lead_id"] == "d000"
    stats = {}
    api.service.leads(stats=stats)  # the default page of 50
    assert stats["rows_read"] <= 51
    stats = {}
    api.service.leads(sort="score", limit=1, stats=stats)  # lowest first: every lead is read
    assert stats["rows_read"] == 200
