"""Ingest errors that the official tracking clients can read.

RudderStack's Python client (rudder-sdk-python 2.1.9, ``request.post``) reads ``code`` and
``message`` at the top of an error body; it raises ``KeyError`` on ours (they are inside
``error``) and retries what it cannot read as if the network had failed: a ``400`` for a bad
batch was sent 10 more times. Segment's client reads the same two keys and falls back when they
are missing. So an error answered on ``/v1/*`` carries ``code`` and ``message`` at the top as
well, beside the one error shape (``{"error": {"code", "message", "details"}}``), which stays
as it is. The rest of the API answers the error shape alone.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ClientErrors", "with_top_level"]

#: the paths the tracking clients send to
INGEST_PREFIX = "/v1/"


def with_top_level(body: bytes) -> bytes | None:
    """``body`` with the error's ``code`` and ``message`` copied to the top; None when it is not
    an error in the one shape."""
    try:
        content = json.loads(body)
    except ValueError:
        return None
    if not isinstance(content, dict) or not isinstance(content.get("error"), dict):
        return None
    error = content["error"]
    if "code" not in error or "message" not in error or "code" in content:
        return None
    flat = {"code": error["code"], "message": error["message"], **content}
    return json.dumps(flat, separators=(",", ":")).encode()  # ASCII: any text is sent


class ClientErrors:
    """ASGI middleware: an error answer (4xx, 5xx) on ``/v1/*`` with ``code`` and ``message``
    at the top too. Error bodies are small; they are held whole to be rewritten. The app puts
    it outside every other middleware, Starlette's error handling included (``api.App``), so
    every ingest error carries the two keys."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(INGEST_PREFIX):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send_flat(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"] = message
                return
            if message["type"] != "http.response.body" or "start" not in held:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            body = b"".join(chunks)
            flat = with_top_level(body)
            if flat is not None:
                body = flat
                start = {
                    **start,
                    "headers": [
                        *((k, v) for k, v in start["headers"] if k.lower() != b"content-length"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_flat)
