"""Lead-to-account matching: the company domain of a lead's email, and the owner of the account.

A lead whose email domain is a company's goes to the owner that company already has (the most
recently assigned owner of another lead with that domain). Free-mail and ISP domains say nothing
about a company, so they are never matched: ``FREE_MAIL`` lists them (docs/handoff.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from ..store import schema as t

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
    row = conn.execute(
        sa.select(t.leads.c.owner)
        .where(
            t.leads.c.email_domain == domain,
            t.leads.c.lead_id != lead_id,
            t.leads.c.owner.is_not(None),
        )
        .order_by(t.leads.c.assigned_at_us.desc(), t.leads.c.lead_id)
        .limit(1)
    ).first()
    return None if row is None else str(row.owner)
