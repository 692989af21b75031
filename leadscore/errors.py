"""Every error leadscore raises on purpose, as one tree.

    LeadscoreError                  base: the CLI prints ``Error: <message>`` and exits 1
    ├── ModelError                  a scoring model is invalid; ``.problems`` lists every one
    │   └── RoutingError            a routing file is invalid (same ``.problems``)          (422)
    ├── InputError                  a leads/events file cannot be read; names file and line
    │   └── BadRowsError            rows that cannot be read, when not skipping them
    ├── ConfigError                 a command was given options that cannot work together
    │   └── MissingExtraError       an optional part is not installed (e.g. leadscore[serve])
    ├── NotFoundError               a lead, model version, key or webhook does not exist   (404)
    ├── InvalidRequestError         a request's parameters cannot work                     (422)
    ├── BadMessageError             an ingested message cannot be accepted                 (400)
    ├── StageMoveError              a lead cannot move to that stage; ``.allowed`` says where (409)
    ├── ConflictError               someone else changed the lead first; reload and retry   (409)
    └── UnavailableError            the service cannot answer now; try again               (503)
        └── NoModelError            no model is active yet                                 (503)

The numbers are the HTTP status the API answers with (leadscore/api/errors.py holds the table).

Front ends catch ``LeadscoreError`` and show its message; anything else is a bug and is
shown with a traceback only under ``--debug``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BadMessageError",
    "BadRowsError",
    "ConfigError",
    "ConflictError",
    "InputError",
    "InvalidRequestError",
    "LeadscoreError",
    "MissingExtraError",
    "ModelError",
    "NoModelError",
    "NotFoundError",
    "Problem",
    "RoutingError",
    "StageMoveError",
    "UnavailableError",
]


class LeadscoreError(Exception):
    """Base of every error meant for a user."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model file, with where it is and how to fix it."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ModelError(LeadscoreError):
    #: what the file is called in the message's first line
    subject = "the model"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{self.subject} has {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(str(p) for p in self.problems))


class RoutingError(ModelError):
    """A routing file is invalid; ``.problems`` lists every problem with FILE:LINE:COLUMN."""

    subject = "the routing file"


class InputError(LeadscoreError):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message)


class BadRowsError(InputError):
    def __init__(self, file: str, rows: list[tuple[int, str]], total: int) -> None:
        self.rows = rows
        self.total = total
        lines = [f"{file}:{line}: {msg}" for line, msg in rows]
        more = f"\n… and {total - len(rows)} more" if total > len(rows) else ""
        super().__init__(
            f"{total} row{'s' if total != 1 else ''} cannot be read:\n"
            + "\n".join(lines)
            + more
            + "\nFix the rows, or pass --skip-bad-rows to score the rest and count what was skipped."
        )


class ConfigError(LeadscoreError):
    pass


class MissingExtraError(ConfigError):
    """A command needs an optional part that is not installed."""


class NotFoundError(LeadscoreError):
    """What was asked for does not exist."""


class InvalidRequestError(LeadscoreError):
    """A request's parameters cannot work together or are out of range."""


class BadMessageError(LeadscoreError):
    """An ingested message cannot be accepted; the message says why."""


class UnavailableError(LeadscoreError):
    """The service cannot answer now (its database is down, no model is active); try again."""


class NoModelError(UnavailableError):
    """No scoring model is active yet."""


class StageMoveError(LeadscoreError):
    """A lifecycle move that is not allowed, or lacks what it needs (a reason, BANT).

    ``from_stage``/``to_stage`` name the move and ``allowed`` the stages the lead can move to
    from where it is, so a caller can show the choices."""

    def __init__(
        self, message: str, *, from_stage: str, to_stage: str, allowed: tuple[str, ...]
    ) -> None:
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.allowed = tuple(allowed)
        super().__init__(message)

    @property
    def details(self) -> dict[str, object]:
        return {"from": self.from_stage, "to": self.to_stage, "allowed": list(self.allowed)}


class ConflictError(LeadscoreError):
    """Someone else changed the same thing first (two reps moving one lead at once)."""
