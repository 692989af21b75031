"""Where the ``leadscore`` command starts, and the arguments its commands share.

A nightly ``leadscore score … --quiet`` writing JSON Lines or CSV is the command run most, on
the largest data, in jobs that start a fresh process each time; its start-up counts. The full
command line (typer, which brings pydantic and rich, and every command's module) takes several
tenths of a second to import before the first file is read. So ``main`` looks at the arguments
first: a quiet ``score`` to jsonl or csv, with no terminal to show progress on and only options
it knows, runs from here with the batch modules alone; anything else — help, a summary, a
table, Spark, an option this parser does not know, a repeated option — goes to leadscore.cli,
which parses and checks it as always. Both paths run the same functions (leadscore.batch) and
write the same bytes. The options both take are spelt once, here (``SCORE_OPTIONS``);
tests/test_launch.py holds the two to the same options and outputs.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, LeadscoreError

if TYPE_CHECKING:
    from .io import Columns
    from .model import Model

__all__ = [
    "QUICK_SCORE_OPTIONS",
    "SCORE_OPTIONS",
    "input_columns",
    "load_model_file",
    "main",
    "parse_as_of",
    "spellings",
]


def parse_as_of(text: str | None) -> datetime:
    """``--as-of``: an ISO 8601 date or timestamp (no offset means UTC); absent means now."""
    if text is None or text.strip().lower() == "now":
        return datetime.now(UTC)
    s = text.strip()
    try:
        ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ConfigError(
            f"--as-of {text!r} is not a date or timestamp; write it like 2026-06-01 or "
            "2026-06-01T09:30:00Z (no offset means UTC)"
        ) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def load_model_file(model: Path) -> Model:
    """The model at ``model``; a missing file is an error that says how to make one."""
    from .model import load_model

    if not model.exists():
        hint = (
            " Run `leadscore init` to write a starter model."
            if model.name == "leadscore.yaml"
            else ""
        )
        raise ConfigError(f"{model}: no such model file.{hint}")
    return load_model(model)


def input_columns(id_column: str | None, event_columns: str | None) -> Columns | None:
    """``--id-column`` and ``--event-columns`` as the readers' Columns (None: the defaults)."""
    from .io import Columns, parse_event_columns

    if id_column is None and event_columns is None:
        return None
    if id_column is not None and not id_column.strip():
        raise ConfigError("--id-column needs a column name")
    return Columns(
        lead_id=id_column if id_column is not None else "lead_id",
        events=parse_event_columns(event_columns),
    )


#: the options of ``leadscore score`` that the quick start takes, by the parameter each sets:
#: every spelling, and whether it is a flag. The one place these are spelt: the full command line
#: declares them from here (``spellings``), as the only names they have, and the quick start
#: reads them, so the two cannot differ. An option of ``score`` not here (``--limit``, the Spark
#: ones, one added later) sends a run to the full command line until the quick start takes it
SCORE_OPTIONS: dict[str, tuple[tuple[str, ...], bool]] = {
    "leads": (("--leads",), False),
    "events": (("--events",), False),
    "segment": (("--segment",), False),
    "id_column": (("--id-column",), False),
    "event_columns": (("--event-columns",), False),
    "as_of": (("--as-of",), False),
    "fmt": (("--format", "-f"), False),
    "output": (("--output", "-o"), False),
    "include": (("--include",), False),
    "engine": (("--engine",), False),
    "skip_bad_rows": (("--skip-bad-rows",), True),
    "quiet": (("--quiet", "-q"), True),
}
#: each spelling of those options, and the parameter it sets (True for a flag)
QUICK_SCORE_OPTIONS: dict[str, tuple[str, bool]] = {
    name: (param, flag) for param, (names, flag) in SCORE_OPTIONS.items() for name in names
}


def spellings(param: str) -> tuple[str, ...]:
    """How the command line spells the option that sets ``param`` (``--format``, ``-f``)."""
    return SCORE_OPTIONS[param][0]


def quick_score_args(argv: list[str]) -> dict[str, Any] | None:
    """The parameters of a ``score`` the quick start runs, or None for the full CLI."""
    if not argv or argv[0] != "score":
        return None
    got: dict[str, Any] = {}
    model: str | None = None
    args = iter(argv[1:])
    for arg in args:
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if name not in QUICK_SCORE_OPTIONS:
                return None
            key, flag = QUICK_SCORE_OPTIONS[name]
            if key in got:
                return None
            if flag:
                if eq:
                    return None
                got[key] = True
                continue
            if not eq:
                value = next(args, "")
                if not value or value.startswith("-"):
                    return None
            got[key] = value
        elif model is None and arg:
            model = arg
        else:
            return None
    if not got.get("quiet") or got.get("fmt", "jsonl") not in ("jsonl", "csv"):
        return None
    if got.get("engine", "duckdb") != "duckdb":
        return None
    got["model"] = model or "leadscore.yaml"
    return got


def quick_score(p: dict[str, Any]) -> None:
    """``leadscore score … --quiet`` to jsonl or csv: the same steps as the full command's."""
    from .batch import data_warnings, parse_include, run
    from .sql.cache import default_cache

    def path(key: str) -> Path | None:
        return Path(p[key]) if key in p else None

    m = load_model_file(Path(p["model"]))
    when = parse_as_of(p.get("as_of"))
    columns = input_columns(p.get("id_column"), p.get("event_columns"))
    included = parse_include(p.get("include"))
    batch = run(
        m,
        path("leads"),
        path("events"),
        when,
        segment=path("segment"),
        skip_bad_rows=bool(p.get("skip_bad_rows")),
        columns=columns,
        count_orphans=False,  # only the summary, which --quiet leaves out, says them
        cache=default_cache(),  # the compiled query of an earlier run: no sqlglot to import
    )
    batch.include = included
    warnings = data_warnings(m, batch.inputs, when, None, batch)
    batch.write(p.get("fmt", "jsonl"), None, path("output"))
    for w in warnings:
        print(f"Warning: {w}", file=sys.stderr)


def main() -> None:
    """The ``leadscore`` command: the quick start when it applies, else leadscore.cli."""
    p = quick_score_args(sys.argv[1:])
    if p is None or sys.stderr.isatty() or os.environ.get("LEADSCORE_DEBUG"):
        from .cli import main as cli_main

        cli_main()
        return
    try:
        quick_score(p)
    except LeadscoreError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:  # a bug: as leadscore.cli says it
        print(
            f"Error: unexpected {type(e).__name__}: {e}\n"
            "This is a bug in leadscore; run again with --debug for details and report it.",
            file=sys.stderr,
        )
        sys.exit(70)
    sys.exit(0)
