"""Reading a request body: a size limit on the wire and after decompression, gzip, UTF-8, and
JSON that one bad message cannot fail as a whole.

The common case is parsed once by orjson. What orjson refuses is parsed again by the standard
parser with three allowances, so that the message holding the problem is refused by index and
the others stored: ``NaN`` and ``Infinity`` (which Python clients send), integers longer than
Python converts (kept as ``HugeNumber``), and nesting deeper than ``PARSE_DEPTH`` (the deep part
is cut, which leaves the message deeper than any message may be).
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from ..service.messages import HugeNumber
from .errors import ApiError

__all__ = ["PARSE_DEPTH", "cap_depth", "decompress", "parse_json", "read_body", "read_raw"]

#: containers nested deeper than this are cut before the standard parser sees them (it recurses)
PARSE_DEPTH = 100
_MAX_INT_DIGITS = 4300  # what Python converts from text (sys.get_int_max_str_digits())
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


async def read_raw(request: Request, limit: int) -> bytes:
    """The body as sent, refused with 413 as soon as it is longer than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        # compressed or not, a body this long on the wire is over the limit once read
        raise ApiError(
            413, "too_large", f"the body is {int(declared):,} bytes; the limit is {limit:,}"
        )
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise ApiError(413, "too_large", f"the body is over {limit:,} bytes")
    except ClientDisconnect:
        # nobody is left to answer; not a bug to log with a traceback
        raise ApiError(
            400, "bad_request", "the client closed the connection before its body arrived"
        ) from None
    return bytes(buf)


def decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """gzip or deflate data, whole and nothing after it, within ``limit`` bytes uncompressed.
    Several gzip members one after the other are one body (RFC 1952)."""
    if encoding not in ("gzip", "deflate"):
        raise ApiError(
            415, "unsupported_encoding", f"content encoding {encoding!r}; use gzip or none"
        )
    out = bytearray()
    rest = raw
    try:
        while True:
            d = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
            out += d.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise ApiError(413, "too_large", f"the body is over {limit:,} bytes uncompressed")
            if not d.eof:
                raise ApiError(400, "bad_encoding", f"the {encoding} data is cut short")
            rest = d.unused_data
            if not rest:
                return bytes(out)
            if encoding != "gzip" or not rest.startswith(b"\x1f\x8b"):
                raise ApiError(
                    400,
                    "bad_encoding",
                    f"{len(rest):,} bytes follow the {encoding} data; send the compressed body alone",
                )
    except zlib.error:
        raise ApiError(400, "bad_encoding", f"the body is not valid {encoding}") from None


def cap_depth(text: str, depth: int = PARSE_DEPTH) -> str:
    """``text`` with every array or object that opens deeper than ``depth`` replaced by
    ``null``; ``text`` itself when nothing is that deep. Strings are skipped whole."""
    pieces: list[str] = []
    last = 0
    level = 0
    cut_from = -1
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            level += 1
            if level == depth + 1 and cut_from < 0:
                cut_from = m.start()
        elif c in "]}":
            if level == depth + 1 and cut_from >= 0:
                pieces += (text[last:cut_from], "null")
                last = m.end()
                cut_from = -1
            level -= 1
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _int(digits: str) -> Any:
    if len(digits) - digits.startswith("-") > _MAX_INT_DIGITS:
        return HugeNumber(len(digits))
    return int(digits)


def parse_json(data: bytes) -> tuple[Any, bool]:
    """The JSON value of ``data`` (valid UTF-8) and whether it was strict JSON."""
    try:
        return orjson.loads(data), True
    except orjson.JSONDecodeError:
        pass
    text = cap_depth(data.decode("utf-8"))
    try:
        return json.loads(text, parse_int=_int), False
    except json.JSONDecodeError as e:
        raise ApiError(
            400,
            "malformed_json",
            f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
        ) from None
    except RecursionError:  # not expected once capped; a 4xx all the same
        raise ApiError(400, "too_deep", "the body is nested too deeply") from None


async def read_body(request: Request, limit: int) -> Any:
    """The request's JSON body, decompressed, within ``limit`` bytes."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "text/plain", ""):
        raise ApiError(
            415, "unsupported_media_type", f"content type {ctype!r}; send application/json"
        )
    encoding = request.headers.get("content-encoding", "").lower().strip()
    if encoding not in ("", "identity", "gzip", "deflate"):
        raise ApiError(
            415, "unsupported_encoding", f"content encoding {encoding!r}; use gzip or none"
        )
    raw = await read_raw(request, limit)
    data = decompress(raw, encoding, limit) if encoding in ("gzip", "deflate") else raw
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, "bad_encoding", f"the body is not UTF-8 (byte {e.start})") from None
    value, strict = parse_json(data)
    request.state.strict_json = strict
    return value
