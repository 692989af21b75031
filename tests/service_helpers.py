"""Shared parts for the live service's tests: a test model, the real app on a real database with
real keys, a real `leadscore serve` process, a webhook receiver, and the Python engine's score of
what a lead has stored (the reference every stored or served score is checked against)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from leadscore.api import create_app
from leadscore.engine import Event, LeadScore, Scorer
from leadscore.model import Model, parse_model
from leadscore.service.auth import create_key
from leadscore.service.facade import Service
from leadscore.store import open_engine
from leadscore.store import schema as t

with warnings.catch_warnings():
    # Starlette's test client asks for the httpx2 package; the httpx one it falls back on
    # drives the same app in the same way
    warnings.filterwarnings(
        "ignore",
        message=".*install `httpx2`",
    )
    # older Starlette (the lowest version allowed) names an anyio alias newer anyio deprecates
    warnings.filterwarnings(
        "ignore",
        message="The anyio.abc.BlockingPortal alias is deprecated",
        category=DeprecationWarning,
    )
    from starlette.testclient import TestClient

US = 1_000_000
LEADSCORE = [sys.executable, "-m", "leadscore"]

#: The model the service tests run: fit with a min-fit gate, decaying engagement with caps, a
#: fast-track rule, grades.
MODEL = """\
model: 1
name: service-test
fit:
  max: 50
  rules:
    - name: Senior title
      when: {field: title, matches: "vp|director|head of"}
      points: 20
    - name: Company size
      when: {field: company.employees, between: [200, 5000]}
      points: 15
    - name: Personal email
      when: {field: email, ends_with: "@gmail.com"}
      points: -20
engagement:
  max: 60
  half_life_days: 30
  rules:
    - name: Pricing page
      event: page
      when: {field: path, starts_with: /pricing}
      points: 10
      cap: 30
    - name: Any page
      event: page
      points: 1
      cap: 5
    - name: Webinar
      event: Webinar Attended
      points: 10
    - name: Demo request
      event: Demo Requested
      points: 25
      fast_track: true
mql:
  threshold: 50
  min_fit: 20
grades:
  fit: {A: 30, B: 20, C: 10}
  engagement: {1: 40, 2: 20, 3: 5}
"""


def now_dt() -> datetime:
    return datetime.now(UTC)


def ago(days: float = 0.0, **kw: float) -> str:
    """An ISO 8601 timestamp this long before now (negative: in the future)."""
    return iso(now_dt() - timedelta(days=days, **kw))


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def us(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def mid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------- messages


def identify(user: str | None, traits: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"type": "identify", "messageId": mid(), "traits": traits or {}}
    if user is not None:
        m["userId"] = user
    return {**m, **kw}


def track(user: str | None, event: str, props: dict[str, Any] | None = None, **kw: Any) -> dict:
    m: dict[str, Any] = {
        "type": "track",
        "messageId": mid(),
        "event": event,
        "properties": props or {},
    }
    if user is not None:
        m["userId"] = user
    return {**m, **kw}


def page(user: str | None, path: str, **kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"type": "page", "messageId": mid(), "properties": {"path": path}}
    if user is not None:
        m["userId"] = user
    return {**m, **kw}


def group(user: str, group_id: str, traits: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "type": "group",
        "messageId": mid(),
        "userId": user,
        "groupId": group_id,
        "traits": traits,
        **kw,
    }


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape; returns the error object."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    if resp.request.url.path.startswith("/v1/"):
        # ingest errors also carry code and message at the top, for the tracking clients
        assert set(body) == {"error", "code", "message"}, body
        assert (body["code"], body["message"]) == (
            body["error"]["code"],
            body["error"]["message"],
        ), body
    else:
        assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    if code is not None:
        assert err["code"] == code, err
    return err  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- reference scores


def loads(v: Any) -> Any:
    while isinstance(v, str):
        v = json.loads(v)
    return v


def stored_events(conn: sa.Connection, lead_id: str) -> list[Event]:
    rows = conn.execute(
        sa.select(t.events.c.event, t.events.c.ts_us, t.events.c.properties).where(
            t.events.c.lead_id == lead_id, t.events.c.event.is_not(None)
        )
    ).all()
    return [Event(name, from_us(ts), loads(props) or {}) for name, ts, props in rows]


def python_score(engine: sa.Engine, model: Model, lead_id: str, at_us: int) -> LeadScore:
    """A fresh Python-engine score of the lead's stored traits and events at ``at_us``."""
    with engine.connect() as conn:
        traits = loads(
            conn.execute(
                sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead_id)
            ).scalar_one()
        )
        events = stored_events(conn, lead_id)
    return Scorer(model).score(traits or {}, events, from_us(at_us))


def lead_row(engine: sa.Engine, lead_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(t.leads).where(t.leads.c.lead_id == lead_id)).one()


def assert_matches(stored: Any, ref: LeadScore, *, tol: float = 1e-6) -> None:
    """A stored or served score equals the reference: numbers within ``tol``, decisions exactly."""
    for name in ("fit", "engagement", "score"):
        got = stored[name] if isinstance(stored, dict) else getattr(stored, name)
        assert abs(float(got) - getattr(ref, name)) <= tol, (name, got, getattr(ref, name))
    for name in ("grade", "mql", "fast_track"):
        got = stored[name] if isinstance(stored, dict) else getattr(stored, name)
        assert (bool(got) if name != "grade" else got) == getattr(ref, name), (name, got)


def table_count(engine: sa.Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )


# ---------------------------------------------------------------------- the app in process


class SteppedClock:
    """The service's clock in tests: the machine's time plus whatever the test moved it on by,
    so a test reaches a later instant without sleeping."""

    def __init__(self) -> None:
        self.offset_us = 0

    def now_us(self) -> int:
        return time.time_ns() // 1000 + self.offset_us

    def advance(self, **delta: float) -> None:
        self.offset_us += timedelta(**delta) // timedelta(microseconds=1)


class Api:
    """The real FastAPI app on a real database, with the test model active and real keys."""

    def __init__(self, url: str, model: str = MODEL) -> None:
        self.url = url
        self.engine = open_engine(url)
        self.clock = SteppedClock()
        self.app = create_app(self.engine, deliver=False, clock=self.clock)
        self.service: Service = self.app.state.service
        if model:
            self.service.add_model(model, "test")
        self.model = parse_model(model, "model") if model else None
        _, self.write_key = create_key(self.engine, "website", "ingest")
        _, self.read_token = create_key(self.engine, "ops", "read")
        _, self.admin_token = create_key(self.engine, "admin", "admin")
        self.client = TestClient(self.app)

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()

    def send(
        self, *msgs: dict[str, Any], key: str | None = None, gz: bool = False
    ) -> httpx.Response:
        body = json.dumps({"batch": list(msgs)}).encode()
        headers = {"Content-Type": "application/json", **basic(key or self.write_key)}
        if gz:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.client.post("/v1/batch", content=body, headers=headers)

    def ok(self, *msgs: dict[str, Any]) -> dict[str, Any]:
        resp = self.send(*msgs)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        assert body["rejected"] == [], body
        return body

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(
            path,
            content=body if isinstance(body, bytes) else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=bearer(token or self.read_token))

    def lead(self, lead_id: str, **params: Any) -> dict[str, Any]:
        resp = self.get(f"/api/leads/{lead_id}", **params)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def leads(self, **params: Any) -> dict[str, Any]:
        resp = self.get("/api/leads", **params)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def row(self, lead_id: str) -> Any:
        return lead_row(self.engine, lead_id)

    def reference(self, lead_id: str, at_us: int | None = None) -> LeadScore:
        """The Python engine on the lead's stored traits and events, at the time it was scored."""
        assert self.service.active is not None
        at = self.row(lead_id).scored_at_us if at_us is None else at_us
        return python_score(self.engine, self.service.active.model, lead_id, at)

    def count(self, table: sa.Table, *where: Any) -> int:
        return table_count(self.engine, table, *where)


# ---------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, cwd: Path | None = None) -> str:
    """Run `leadscore ARGS` as a user would; its standard output."""
    proc = subprocess.run(
        [*LEADSCORE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll until ``check()`` is truthy; its value. Fails naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Server:
    """A real `leadscore serve` process on 127.0.0.1 and a free port."""

    def __init__(self, db_url: str, model: Path, log: Path, *args: str) -> None:
        """``args``: more `leadscore serve` options."""
        self.args = args
        self.db_url = db_url
        self.model = model
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *LEADSCORE,
                    "serve",
                    "--model",
                    str(self.model),
                    "--port",
                    str(self.port),
                    "--database-url",
                    self.db_url,
                    "--log-level",
                    "warning",
                    # no per-key rate limit unless a test sets one (a later --ingest-rate wins):
                    # the load tests measure durability, and ingest outruns 1,000 events a second
                    "--ingest-rate",
                    "0",
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"leadscore serve exited:\n{self.log.read_text()}")
            try:
                return httpx.get(self.base + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, "leadscore serve to answer /health", timeout=60)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        log = self.log.read_text() if self.log.exists() else ""
        assert "Traceback" not in log, log


class Receiver:
    """A local HTTP receiver for webhooks. ``statuses`` are answered in turn, then 200."""

    def __init__(
        self, statuses: list[int] | None = None, hold: threading.Event | None = None
    ) -> None:
        """``hold``: every request waits until it is set before being read and answered."""
        self.statuses = list(statuses or [])
        self.arrived = threading.Event()  # set when the first request comes in
        self._hold = hold
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.arrived.set()
                if hold is not None:
                    hold.wait()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mql"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        if hold_ := getattr(self, "_hold", None):
            hold_.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b, s in self.requests if 200 <= s < 300]


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Check X-Leadscore-Signature as a receiver would: t=<unix s>,v1=<HMAC-SHA256 of 't.body'>."""
    import hashlib
    import hmac

    sig = {k.lower(): v for k, v in headers.items()}["x-leadscore-signature"]
    parts = dict(p.split("=", 1) for p in sig.split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), "the signature does not verify"
    assert abs(int(parts["t"]) - time.time()) < 600


@contextmanager
def api_on(url: str, model: str = MODEL) -> Iterator[Api]:
    api = Api(url, model)
    try:
        yield api
    finally:
        api.close()
