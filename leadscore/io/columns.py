"""Which columns of the user's files hold the id, the event name, the time and the properties.

CRM exports name them their own way (``Prospect ID``, ``Activity``, ``Created On``); instead of
renaming headers by hand, ``--id-column`` and ``--event-columns`` say which column is which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["EVENT_KEYS", "Columns", "parse_event_columns"]

#: The events file's columns, by the name leadscore gives them.
EVENT_KEYS = ("lead_id", "event", "timestamp", "properties")


@dataclass(frozen=True)
class Columns:
    """The column names as they are in the files; the defaults are leadscore's own names."""

    lead_id: str = "lead_id"
    events: dict[str, str] = field(default_factory=dict)

    def event(self, key: str) -> str:
        """The events file's column for ``key`` (one of EVENT_KEYS)."""
        return self.events.get(key, key)

    @property
    def is_default(self) -> bool:
        return self.lead_id == "lead_id" and all(k == v for k, v in self.events.items())


def parse_event_columns(text: str | None) -> dict[str, str]:
    """``lead_id=Lead,event=Activity,timestamp=At`` as a mapping; unknown keys are errors."""
    if not text or not text.strip():
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ConfigError(
                f"--event-columns: {part.strip()!r} is not NAME=COLUMN; write it like "
                "lead_id=Lead,event=Activity,timestamp=At"
            )
        if key not in EVENT_KEYS:
            import difflib

            close = difflib.get_close_matches(key, EVENT_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--event-columns: {key!r} is not one of {', '.join(EVENT_KEYS)}{hint}"
            )
        if key in out:
            raise ConfigError(f"--event-columns: {key!r} is given twice")
        out[key] = value
    return out
