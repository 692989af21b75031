"""What an operator sees: failed webhook deliveries, and serve on a port that is taken."""

from __future__ import annotations

import socket

import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.cli_helpers import ls as _ls


def ls(*args: str):
    return _ls(*args, ok=False, columns=250)


def test_webhooks_deliveries_lists_failures_with_the_last_error_and_next_attempt(tmp_path):
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    assert ls("webhooks", "add", "http://crm.example/hook", "--database-url", url).returncode == 0
    engine = open_engine(url)
    rows = [
        # delivered, retrying after a 503, given up after a timeout
        {"delivered_at_us": 1_780_000_000_000_000, "attempts": 1, "last_error": None},
        {"attempts": 2, "last_error": "HTTP 503 Service Unavailable"},
        {"attempts": 8, "last_error": "timed out", "failed_at_us": 1_780_000_100_000_000},
    ]
    with engine.begin() as conn:
        for i, extra in enumerate(rows):
            conn.execute(
                sa.insert(t.outbox).values(
                    webhook_id=1,
                    event="lead.mql",
                    payload="{}",
                    created_at_us=1_780_000_000_000_000 + i,
                    next_attempt_us=1_780_000_200_000_000,
                    **extra,
                )
            )
    out = ls("webhooks", "deliveries", "--database-url", url)
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stdout.splitlines() if "lead.mql" in x]
    assert len(lines) == 2
    assert "failed" in lines[0] and "timed out" in lines[0]
    assert "retrying" in lines[1] and "HTTP 503" in lines[1] and "2026-05-28T" in lines[1]
    every = ls("webhooks", "deliveries", "--all", "--database-url", url)
    assert "delivered" in every.stdout
    none = ls("webhooks", "deliveries", "--webhook", "7", "--database-url", url)
    assert none.returncode == 0 and "No failed or retrying deliveries." in none.stderr


def test_serve_on_a_port_in_use_says_so_before_announcing(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        proc = ls("serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 's.db'}")
    finally:
        taken.close()
    assert proc.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "another --port" in proc.stderr and "Listening" not in proc.stderr


def test_stage_history_is_on_one_clock(api) -> None:
    """A lead is first seen at its first message's own time, so its MQL, dated by the event
    that made it, is never before the lead existed."""
    from tests.service_helpers import ago, group, identify, parse_iso, track

    first, demo = ago(0, hours=6), ago(0, hours=4)
    api.ok(
        identify("dan", {"email": "dan@acme.io", "title": "VP Sales"}, timestamp=first),
        group("dan", "acme", {"name": "Acme", "employees": 900}, timestamp=ago(0, hours=5)),
        track("dan", "Demo Requested", timestamp=demo),
    )
    history = api.lead("dan")["stage_history"]
    assert [h["stage"] for h in history] == ["lead", "mql"]
    seen, mql = (parse_iso(h["at"]) for h in history)
    assert seen == parse_iso(first) and mql == parse_iso(demo)


def test_the_mql_reason_names_the_score_it_qualified_with_at_a_shared_timestamp() -> None:
    """Two events with one timestamp: the first makes the lead an MQL (30 + 25 = 55), the
    second adds 25 more; the reason names 55, the score at which it qualified, not 80."""
    from datetime import UTC, datetime

    from leadscore.engine import Event, Scorer
    from leadscore.engine.incremental import mql_reason, rescore
    from leadscore.model import parse_model

    model = parse_model(
        "model: 1\nname: m\n"
        "fit: {rules: [{name: Senior, when: {field: title, exists: true}, points: 30}]}\n"
        "engagement: {rules: [{name: Pricing, event: Pricing, points: 25}]}\n"
        "mql: {threshold: 50}\n"
    )
    scorer = Scorer(model)
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    events = [Event("Pricing", at), Event("Pricing", at)]
    held = scorer.fit_held({"title": "VP"})
    step = rescore(scorer, held, events, [events[0].ts_us], events[0].ts_us + 1, False)
    assert step.score.score == 80 and step.mql_score is not None
    assert step.mql_at == events[0].ts_us
    assert mql_reason(model, step.mql_score) == "score 55 reached threshold 50"
