"""Which URLs a webhook may have. Pure: the standard library only.

A URL is taken when it is an absolute ``http`` or ``https`` URL (the scheme in any case) with a
host, a valid port, no user name or password (a secret in a URL ends up in logs; sign with the
webhook's secret instead), and no whitespace or control characters (CR/LF would split a request
line). It is stored with its scheme and host in lower case.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError

__all__ = ["MAX_URL_LENGTH", "check_url", "redact_url"]

MAX_URL_LENGTH = 2048
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


def check_url(url: str) -> str:
    """``url`` as stored, or ConfigError saying what is wrong with it and what to send."""
    if not isinstance(url, str) or not url:
        raise ConfigError("give the webhook an http(s) URL")
    if len(url) > MAX_URL_LENGTH:
        raise ConfigError(f"the URL is {len(url):,} characters; the limit is {MAX_URL_LENGTH:,}")
    bad = _UNSAFE.search(url)
    if bad:
        raise ConfigError(
            f"{url!r} contains {bad.group()!r} at position {bad.start()}; "
            "a URL has no spaces or control characters (percent-encode them)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in range
    except ValueError as e:
        raise ConfigError(f"{url!r} is not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"{url!r} is not an http(s) URL; webhooks are sent over HTTP")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"the URL {_redacted(url)!r} holds a user name or password; remove them "
            "(verify X-Leadscore-Signature with the webhook's secret instead)"
        )
    host = parts.hostname
    if not host:
        raise ConfigError(f"{url!r} has no host")
    if not url.isascii():
        raise ConfigError(f"{url!r} has characters outside ASCII; percent-encode them")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def _redacted(url: str) -> str:
    scheme, _, rest = redact_url(url).partition("://")
    return f"{scheme}://…@{rest}"


def redact_url(url: str) -> str:
    """``url`` as it may be logged: ``scheme://host[:port]/path``, without the query, fragment
    or user name and password, where a receiver may keep its own secret (``?token=…``). Never
    raises, whatever is stored."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    shown = f"{scheme.lower()}://{netloc}" if sep else netloc
    return shown + slash + path
