"""Service commands: serve, keys, webhooks."""

from __future__ import annotations

import errno
import importlib
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import ConfigError, MissingExtraError
from ..service.ratelimit import DEFAULT_API, DEFAULT_INGEST, Rate, Settings
from . import DbOpt, _load, app, err, out

#: what the service commands import, all from the ``serve`` extra
_SERVICE_PARTS = (
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "httpx",
    "prometheus_client",
)


def _need_service(command: str) -> None:
    """A clear error, not an ImportError, when the service's parts are not installed."""
    missing = []
    for name in _SERVICE_PARTS:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(
            f"`leadscore {command}` needs the live service's parts, which are not installed "
            f"({', '.join(missing)}): pip install 'leadscore[serve]' "
            "(and 'leadscore[postgres]' for PostgreSQL)"
        )


@app.command()
def serve(
    model: Annotated[
        Path | None, typer.Option("--model", help="Activate this model at start (validated first).")
    ] = None,
    routing: Annotated[
        Path | None,
        typer.Option("--routing", help="Activate this routing file at start (validated first)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    database_url: DbOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            min=0.1,
            help="Seconds a client has to send a request's headers, and again its body (408 after).",
        ),
    ] = 30.0,
    retain_events_days: Annotated[
        float | None,
        typer.Option(
            "--retain-events-days",
            min=1,
            help="Delete events older than this many days, in the background (at least the "
            "model's engagement.window_days; scores do not change).",
        ),
    ] = None,
    ingest_rate: Annotated[
        float,
        typer.Option(
            "--ingest-rate",
            min=0,
            help="Events a second each write key may send (429 with Retry-After beyond); 0: no limit.",
        ),
    ] = DEFAULT_INGEST.per_s,
    ingest_burst: Annotated[
        int,
        typer.Option("--ingest-burst", min=1, help="Events a write key may send at once."),
    ] = int(DEFAULT_INGEST.burst),
    api_rate: Annotated[
        float,
        typer.Option(
            "--api-rate",
            min=0,
            help="Requests a second to /api each token (or client address without one) may make; 0: no limit.",
        ),
    ] = DEFAULT_API.per_s,
    api_burst: Annotated[
        int,
        typer.Option(
            "--api-burst", min=1, help="API requests a token or address may make at once."
        ),
    ] = int(DEFAULT_API.burst),
    ingest_inflight: Annotated[
        int,
        typer.Option(
            "--ingest-inflight",
            min=0,
            help="Ingest requests answered at once; more are shed with 503 and Retry-After. 0: no cap.",
        ),
    ] = Settings.ingest_inflight,
    api_inflight: Annotated[
        int,
        typer.Option(
            "--api-inflight",
            min=0,
            help="API requests answered at once; more are shed with 503 and Retry-After. 0: no cap.",
        ),
    ] = Settings.api_inflight,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="text: one readable line per record; json: one JSON object per line "
            "(time, level, logger, message, request_id and fields).",
        ),
    ] = "text",
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help="Who may read GET /metrics: a read or admin API token (token); also anyone "
            "on this machine without one (loopback); anyone (open); no one (off).",
        ),
    ] = "token",
) -> None:
    """Run the live service: Segment-compatible ingest, real-time scores, routing and SLAs, webhooks, API."""
    _need_service("serve")
    import logging
    import logging.config

    from ..api import create_app
    from ..api.limits import Limits
    from ..api.logs import FORMATS, log_config
    from ..api.metrics import ACCESS
    from ..api.server import run
    from ..store import open_engine
    from ..store.db import shown_url

    try:
        limits = Settings(
            ingest=Rate(ingest_rate, ingest_burst),
            api=Rate(api_rate, api_burst),
            ingest_inflight=ingest_inflight,
            api_inflight=api_inflight,
        )
    except ValueError as e:  # e.g. --ingest-rate inf
        raise ConfigError(f"the limits cannot work: {e}") from None
    if log_format not in FORMATS:
        raise ConfigError(f"--log-format {log_format!r}: use {' or '.join(FORMATS)}")
    if metrics not in ACCESS:
        raise ConfigError(f"--metrics {metrics!r}: use one of {', '.join(ACCESS)}")
    if log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError(f"--log-level {log_level!r}: use debug, info, warning or error")
    logging.config.dictConfig(log_config(log_format, log_level))

    def say(text: str, warn: bool = False) -> None:
        if log_format == "json":  # every line on stderr a JSON object, these too
            logging.getLogger("leadscore.serve").log(
                logging.WARNING if warn else logging.INFO, text
            )
        else:
            err.print(text)

    routing_text = None
    if routing is not None:  # checked before anything starts, with the file's own name
        from ..handoff import parse_routing

        if not routing.exists():
            raise ConfigError(f"{routing}: no such routing file")
        routing_text = routing.read_text(encoding="utf-8")
        parse_routing(routing_text, str(routing))
    engine = open_engine(database_url)
    app_ = create_app(
        engine,
        retain_events_days=retain_events_days,
        limits=Limits(limits),
        metrics_access=metrics,
    )
    if model is not None:
        m = _load(model)  # the same errors as `leadscore validate`
        info = app_.state.service.ensure_model(
            model.read_text(encoding="utf-8"), str(model), f"cli:{model}"
        )
        what = (
            "unchanged"
            if info.get("unchanged")
            else f"activated; {info.get('leads_rescored', 0)} leads re-scored"
        )
        say(f"Model {m.name!r} is version {info['version']} ({what}).")
    elif app_.state.service.active_or_none is None:
        say(
            "No model is active yet: events are refused until you start with --model FILE or PUT /api/models.",
            warn=True,
        )
    if retain_events_days is not None:  # the model now active must not count older events
        app_.state.service.set_retention(retain_events_days)
    if routing is not None and routing_text is not None:
        got = app_.state.service.ensure_routing(routing_text, str(routing), f"cli:{routing}")
        what = "unchanged" if got.get("unchanged") else "activated"
        say(f"Routing {got['name']!r} is version {got['version']} ({what}).")
    elif app_.state.service.routing is None:
        say(
            "No routing is active: new MQLs are not assigned until you start with --routing FILE "
            "or PUT /api/routing.",
            warn=True,
        )
    # bind first, then announce: a port in use is an error before anything says "Listening"
    sock = _bind(host, port)
    say(
        f"Database: {shown_url(engine.url)}. Listening on http://{host}:{sock.getsockname()[1]} (API docs at /docs)."
    )
    started = run(
        app_,
        sock,
        log_level=log_level,
        request_timeout=request_timeout,
        log_format=log_format,
    )
    if not started:
        raise ConfigError(
            "the service stopped while starting (see the messages above); nothing was served"
        )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or an error that says what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        hint = (
            "; another process is using it: stop it or pass another --port"
            if e.errno in (errno.EADDRINUSE, errno.EACCES)
            else ""
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    sock.set_inheritable(True)
    return sock


keys_app = typer.Typer(
    help="Write keys (scope ingest) and API tokens (scopes read, admin).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. website.")],
    scope: Annotated[str, typer.Option("--scope", help="ingest, read or admin.")] = "ingest",
    database_url: DbOpt = None,
) -> None:
    """Create a key; its secret is printed once and stored only as a hash."""
    _need_service("keys")
    from ..service.auth import create_key
    from ..store import open_engine

    key_id, secret = create_key(open_engine(database_url), name, scope)
    err.print(
        f"Key {key_id} ({name}, scope {scope}). Keep the secret now; it cannot be shown again:"
    )
    print(secret)


@keys_app.command("list")
def keys_list(database_url: DbOpt = None) -> None:
    """List keys (never their secrets)."""
    _need_service("keys")
    from ..service.auth import list_keys
    from ..store import open_engine

    table = Table("id", "name", "scope", "starts with", "created", "revoked")
    for k in list_keys(open_engine(database_url)):
        table.add_row(
            str(k["id"]),
            k["name"],
            k["scope"],
            k["prefix"] + "…",
            k["created_at"],
            k["revoked_at"] or "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")],
    database_url: DbOpt = None,
) -> None:
    """Revoke a key: every running server refuses it within a second."""
    _need_service("keys")
    from ..service.auth import revoke_key
    from ..store import open_engine

    if not revoke_key(open_engine(database_url), key_id):
        raise ConfigError(f"there is no active key {key_id}")
    err.print(f"Key {key_id} revoked.")


hooks_app = typer.Typer(
    help="Webhooks notified when a lead becomes an MQL, is assigned, breaches its SLA or changes stage.",
    no_args_is_help=True,
)
app.add_typer(hooks_app, name="webhooks")


@hooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="Where to POST notifications.")],
    events: Annotated[
        list[str],
        typer.Option(
            "--events",
            help="Which notifications: lead.mql, lead.assigned, lead.sla_breached, lead.stage_changed.",
        ),
    ] = ["lead.mql"],  # noqa: B006
    secret: Annotated[
        str | None, typer.Option("--secret", help="Signing secret (default: a new random one).")
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Register a webhook; prints the secret that signs its deliveries."""
    _need_service("webhooks")
    from ..service.webhooks import add_webhook
    from ..store import open_engine

    names = [e.strip() for x in events for e in x.split(",") if e.strip()]
    hook = add_webhook(open_engine(database_url), url, names, secret)
    err.print(
        f"Webhook {hook['id']} → {url} for {', '.join(names)}. Verify X-Leadscore-Signature with this secret:"
    )
    print(hook["secret"])


@hooks_app.command("list")
def webhooks_list(database_url: DbOpt = None) -> None:
    """List webhooks with their delivery counts."""
    _need_service("webhooks")
    from ..service.webhooks import list_webhooks
    from ..store import open_engine

    table = Table("id", "url", "events", "active", "delivered", "pending", "failed")
    for h in list_webhooks(open_engine(database_url)):
        table.add_row(
            str(h["id"]),
            h["url"],
            ",".join(h["events"]),
            "yes" if h["active"] else "no",
            str(h["delivered"]),
            str(h["pending"]),
            str(h["failed"]),
        )
    out.print(table)


@hooks_app.command("deliveries")
def webhooks_deliveries(
    hook_id: Annotated[
        int | None, typer.Option("--webhook", help="Only this webhook's notifications.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Delivered notifications too, not only the failing.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many, newest first.")
    ] = 50,
    database_url: DbOpt = None,
) -> None:
    """Show which notifications failed or wait for a retry: the last error, the next attempt."""
    _need_service("webhooks")
    from ..service.webhooks import list_deliveries
    from ..store import open_engine

    rows = list_deliveries(open_engine(database_url), hook_id=hook_id, every=every, limit=limit)
    if not rows:
        err.print("No failed or retrying deliveries." if not every else "No deliveries.")
        return
    table = Table(
        "id", "webhook", "event", "created", "state", "attempts", "next attempt", "last error"
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            f"{r['webhook']} {r['url']}",
            r["event"],
            r["created_at"],
            r["state"],
            str(r["attempts"]),
            r["next_attempt"] or "-",
            r["last_error"] or "-",
        )
    out.print(table)


@hooks_app.command("remove")
def webhooks_remove(
    hook_id: Annotated[int, typer.Argument(help="The webhook's id.")], database_url: DbOpt = None
) -> None:
    """Stop notifying a webhook (its delivery log is kept; its pending notifications end as failed)."""
    _need_service("webhooks")
    from ..service.webhooks import remove_webhook
    from ..store import open_engine

    if not remove_webhook(open_engine(database_url), hook_id):
        raise ConfigError(f"there is no webhook {hook_id}")
    err.print(f"Webhook {hook_id} removed.")


@hooks_app.command("retry")
def webhooks_retry(
    hook_id: Annotated[
        int | None,
        typer.Argument(
            help="Only this webhook's (default: every active webhook's).", metavar="[HOOK_ID]"
        ),
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Send again the notifications that used up their retries (a running server sends them
    within a second, each with a fresh set of retries)."""
    _need_service("webhooks")
    from ..service.webhooks import retry_failed
    from ..store import open_engine

    n = retry_failed(open_engine(database_url), hook_id)
    err.print(f"{n} failed notification{'s' if n != 1 else ''} queued to be sent again.")
