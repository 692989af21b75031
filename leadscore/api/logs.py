"""How `leadscore serve` logs: one line per record, human-readable (``text``, the default) or
one JSON object per line (``json``), each with the id of the request it was logged in.

The request id lives in a context variable (``REQUEST_ID``) set by the request middleware
(``observe.py``); a filter on the handler copies it onto every record, so any logger — the
service's, the webhooks', uvicorn's — carries it without being passed it. Threads the
request's work runs in (FastAPI's threadpool) inherit it; the SLA and webhook threads log
with none.

Every line is scrubbed of anything shaped like a leadscore secret (write keys, API tokens,
webhook signing secrets) before it is written: the service never logs one on purpose, and
this catches a key a client put where a key does not belong (a message id, a lead id, a URL).
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FORMATS",
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "log_config",
    "scrub",
]

FORMATS = ("text", "json")

#: the id of the request being answered, where one is
REQUEST_ID: ContextVar[str | None] = ContextVar("leadscore_request_id", default=None)

#: write keys, API tokens (``leadscore keys create``) and webhook secrets
_SECRET = re.compile(r"\b(lsw_|lsr_|lsa_|whsec_)[A-Za-z0-9_\-]{6,}")


def scrub(text: str) -> str:
    """``text`` with every secret-shaped word cut to its prefix."""
    return _SECRET.sub(r"\1[redacted]", text)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` from the request being answered (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


#: what every LogRecord has; anything else on a record was passed as ``extra=`` fields
# (and uvicorn's ``color_message``, its message with terminal colours)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


def _time(record: logging.LogRecord) -> str:
    at = datetime.fromtimestamp(record.created, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``request_id`` (null outside a request), the record's ``extra`` fields, and
    ``exception`` (the traceback) when there is one. ASCII only: a message quoting client
    text with control characters or unpaired surrogates stays one valid line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return scrub(json.dumps(out, ensure_ascii=True, default=str))


class TextFormatter(logging.Formatter):
    """``2026-01-05T10:00:00.123Z INFO leadscore.access [request id] message`` (the ``extra``
    fields are in the JSON lines only)."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        line = f"{_time(record)} {record.levelname} {record.name}" + (f" [{rid}]" if rid else "")
        line += f" {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def log_config(fmt: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for `leadscore serve` (uvicorn applies it): leadscore's
    and uvicorn's loggers at ``level`` in ``fmt``; other libraries' at WARNING, so httpx does
    not log every webhook request (a URL may hold its receiver's secret)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    level = level.upper()
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "leadscore": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            # requests are logged by leadscore.access, with their id and route
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
