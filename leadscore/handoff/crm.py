"""CRM statuses mapped to lifecycle stages, through the routing file's ``crm_stages``."""

from __future__ import annotations

from ..model.values import norm_text
from .routing import Routing

__all__ = ["crm_stage", "crm_status_key"]


def crm_status_key(status: str) -> str:
    """How CRM statuses are compared: trimmed, case ignored (``Closed Won`` = ``closed won``)."""
    return norm_text(status)


def crm_stage(routing: Routing, status: str) -> str | None:
    """The stage a CRM status maps to, or None when the routing file does not map it."""
    return routing.crm_stages.get(crm_status_key(status))
