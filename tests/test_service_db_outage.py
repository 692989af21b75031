"""A PostgreSQL that disappears mid-load (stopped as a crash would stop it, then started again):
while it is down every call is a 503 in the error shape with Retry-After, no acknowledged event
is lost, and `leadscore serve` recovers by itself, without a restart."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from leadscore.testing.postgres import PostgresServer
from tests.service_helpers import MODEL, Server, ago, cli, mid, wait_for


def test_postgres_stopped_and_restarted_mid_load_loses_nothing(tmp_path: Path) -> None:
    # commits reach the disk before they are acknowledged, as in production
    pg = PostgresServer(extra="-c synchronous_commit=on").start()
    server: Server | None = None
    try:
        db_url = pg.create_database()
        model = tmp_path / "leadscore.yaml"
        model.write_text(MODEL)
        server = Server(db_url, model, tmp_path / "server.log").start()
        key = cli("keys", "create", "--name", "load", "--database-url", db_url).strip()
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        acked: list[str] = []
        answers: list[int] = []
        unavailable: list[httpx.Response] = []
        lock = threading.Lock()
        stop = threading.Event()
        failures: list[str] = []
        base = server.base

        def load() -> None:
            n = 0
            with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
                while not stop.is_set():
                    msgs = [
                        {
                            "type": "track" if i % 5 == 0 else "page",
                            "event": "Webinar Attended",
                            "userId": f"lead-{(n * 7 + i) % 50}",
                            "messageId": mid(),
                            "timestamp": ago(0.1),
                            "properties": {"path": "/pricing"},
                        }
                        for i in range(20)
                    ]
                    n += 1
                    # like Segment's clients: the same batch again until it is taken
                    while not stop.is_set():
                        try:
                            resp = client.post("/v1/batch", content=json.dumps({"batch": msgs}))
                        except httpx.HTTPError as e:
                            failures.append(f"{type(e).__name__}: {e}")
                            return
                        with lock:
                            answers.append(resp.status_code)
                        if resp.status_code == 200:
                            with lock:
                                acked.extend(m["messageId"] for m in msgs)
                            break
                        if resp.status_code != 503:
                            failures.append(f"{resp.status_code} {resp.text}")
                            return
                        with lock:
                            unavailable.append(resp)
                        time.sleep(0.05)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            wait_for(lambda: len(acked) >= 20 * 20, "the load to get going", timeout=60)
            pg.halt()  # mid-load: batches are in flight
            wait_for(lambda: len(unavailable) >= 5, "503s while the database is down")
            health = httpx.get(base + "/health", timeout=10)
            assert health.status_code == 503
            assert health.json()["error"]["code"] == "unavailable"
            with lock:
                at_restart = len(acked)
            pg.resume()
            # no restart of serve: it takes events again by itself
            wait_for(lambda: len(acked) >= at_restart + 20 * 20, "ingest to recover", timeout=60)
            assert httpx.get(base + "/health", timeout=10).status_code == 200
        finally:
            stop.set()
            loader.join(60)
        assert not failures, failures[:3]
        assert not loader.is_alive()
        for resp in unavailable:
            assert resp.headers.get("retry-after"), resp.headers
            assert set(resp.json()["error"]) == {"code", "message", "details"}
        assert 200 in answers and 503 in answers

        engine = open_engine(db_url)
        try:
            with engine.connect() as conn:
                stored = set(conn.execute(sa.select(t.events.c.message_id)).scalars())
                leads = conn.execute(sa.select(sa.func.count()).select_from(t.leads)).scalar_one()
        finally:
            engine.dispose()
        missing = [m for m in acked if m not in stored]
        assert missing == [], f"{len(missing)} acknowledged events were lost"
        assert leads == 50
    finally:
        if server is not None:
            server.stop()
        pg.stop()
