"""What an operator sees: failed webhook deliveries, and serve on a port that is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t


def ls(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


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
