"""Lead-to-account matching: the company domain of a lead's email, and the owner of the account.

A lead whose email domain is a company's goes to the owner that company already has (the most
recently assigned owner of another lead with that domain). Free-mail and ISP domains say nothing
about a company, so they are never matched: ``FREE_MAIL`` lists them (docs/handoff.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

__all__ = ["FREE_MAIL", "account_owner", "email_domain"]

#: domains shared by unrelated people: never an account
FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "qq.com",
        "163.com",
        "126.com",
        "zoho.com",
        "tutanota.com",
        "fastmail.com",
        "hey.com",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "libero.it",
        "t-online.de",
        "comcast.net",
        "verizon.net",
        "att.net",
        "btinternet.com",
        "uol.com.br",
        "bol.com.br",
    }
)


def email_domain(traits: Mapping[str, Any]) -> str | None:
    """The lower-cased domain of the ``email`` trait; None without a usable one."""
    email = traits.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().strip(".").lower()
    if not domain or "." not in domain or len(domain) > 255:
        return None
    return domain


def account_owner(conn: Connection, lead_id: str, domain: str | None) -> str | None:
    """The owner of another lead with this company domain (the most recently assigned)."""
    if domain is None or domain in FREE_MAIL:
        return None
    # straight to the driver: routing asks this for every new MQL with a company domain
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(_OWNER.replace("?", mark), (domain, lead_id))
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else str(row[0])


_OWNER = (
    "SELECT owner FROM leads WHERE email_domain = ? AND lead_id <> ? AND owner IS NOT NULL "
    "ORDER BY assigned_at_us DESC, lead_id LIMIT 1"
)
