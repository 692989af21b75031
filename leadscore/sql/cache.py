"""Compiled scoring plans kept on disk between runs (see leadscore.sql.plan).

A nightly ``leadscore score`` runs the same model over files of the same shape every time; its
plan is compiled once and read back on every later run. Where: ``$XDG_CACHE_HOME/leadscore``,
else ``~/.cache/leadscore``; ``LEADSCORE_NO_CACHE=1`` turns it off (every run compiles).

An entry is found by a key over everything its text depends on: the parsed model (every rule,
value and setting, and the file's digest), the column names and types of the leads and the
events as DuckDB reads them, whether the scan checks the events, and the code that writes the
SQL — leadscore's version, the text of its compiler's modules and sqlglot's version. A changed
model file, another file layout or another leadscore thus never finds an old entry. Entries are
written atomically (a temporary file renamed into place); one that cannot be read, is cut short,
was written by another format, does not carry its own key or belongs to another user (its SQL
is run as it is) is ignored and written again. The
cache is only ever an optimisation: a run that cannot read or write it compiles as without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .plan import FORMAT, ScorePlan

__all__ = ["PlanCache", "default_cache"]

#: the modules whose code decides a plan's text: the compiler, what it reads, and the views of
#: the files that the plan's statements name
_CODE = ("sql", "engine", "model", "io", "batch.py", "coverage.py")


def default_cache() -> PlanCache | None:
    """The user's plan cache, or None when ``LEADSCORE_NO_CACHE`` turns it off or the user has
    no home directory (and no ``XDG_CACHE_HOME``)."""
    if os.environ.get("LEADSCORE_NO_CACHE", "").strip() not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if base and os.path.isabs(base):
        root = Path(base)
    else:
        try:
            root = Path.home() / ".cache"
        except RuntimeError:  # no HOME and no passwd entry: every run compiles
            return None
    return PlanCache(root / "leadscore" / "plans")


def _code_digest() -> str | None:
    """leadscore's version, its compiler's source and sqlglot's version, hashed; None when the
    source cannot be read (an installation without it): then nothing is cached."""
    import leadscore

    h = hashlib.sha256(f"leadscore {leadscore.__version__}\n".encode())
    root = Path(leadscore.__file__).parent
    try:
        for part in _CODE:
            p = root / part
            files = sorted(p.glob("*.py")) if p.is_dir() else [p]
            if not files:
                return None
            for f in files:
                h.update(f"{f.relative_to(root)}\n".encode())
                h.update(f.read_bytes())
    except OSError:
        return None
    h.update(f"sqlglot {_sqlglot_version()}\n".encode())
    return h.hexdigest()


def _sqlglot_version() -> str:
    """sqlglot's version without importing it (its import is what the cache saves)."""
    from importlib import metadata

    try:
        return metadata.version("sqlglot")
    except metadata.PackageNotFoundError:
        return "unknown"


class PlanCache:
    """Plans in a directory, one JSON file per key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def key(model_repr: str, shapes: list[str], checks_events: bool) -> str | None:
        """The entry's name, or None when this installation's code cannot be fingerprinted."""
        code = _code_digest()
        if code is None:
            return None
        h = hashlib.sha256()
        for part in (f"plan {FORMAT}", code, model_repr, *shapes, str(checks_events)):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> ScorePlan | None:
        """The plan stored under ``key``, or None (none stored, or an entry that is not sound)."""
        try:
            with open(self._path(key), encoding="utf-8") as f:
                # an entry is SQL this run executes: one another user wrote (a cache directory
                # others can write to) is not trusted
                if hasattr(os, "getuid") and os.fstat(f.fileno()).st_uid != os.getuid():
                    return None
                data = json.loads(f.read())
            if not isinstance(data, dict) or data.get("key") != key:
                return None
            plan = data.get("plan")
            if data.get("digest") != _digest(plan):
                return None
            return ScorePlan.from_json(plan)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, plan: ScorePlan) -> None:
        """Keep ``plan`` under ``key``: written whole or not at all; errors are ignored."""
        body = plan.to_json()
        text = json.dumps({"key": key, "digest": _digest(body), "plan": body})
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".plan-", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self._path(key))
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _digest(plan: Any) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
