"""The ``leadscore`` command: a thin front end over leadscore.model, leadscore.batch and leadscore.sql.

Every error meant for a user is a LeadscoreError: it is printed as ``Error: …`` on stderr with
exit code 1 (2 for a usage mistake, as Click does). Anything else is a bug; it is reported in one
line, and ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .. import __version__
from ..errors import LeadscoreError
from ..launch import input_columns as input_columns
from ..launch import load_model_file, spellings
from ..launch import parse_as_of as parse_as_of

_load = load_model_file  # the commands' own name for it

app = typer.Typer(
    name="leadscore",
    help="Lead scoring and MQL handoff: score leads with a model you can read, test and version.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _console(stderr: bool) -> Console:
    """A console that wraps for a terminal and not for a pipe or a file (unless COLUMNS is
    set): a sentence or a URL written to a log stays on one line."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=1000)


err = _console(stderr=True)
out = _console(stderr=False)

_debug = False


def _version(value: bool) -> None:
    if value:
        print(f"leadscore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback for unexpected errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("LEADSCORE_DEBUG"))


ModelArg = Annotated[Path, typer.Argument(help="The scoring model (YAML).", show_default=True)]
LeadsOpt = Annotated[
    Path | None,
    typer.Option(*spellings("leads"), help="Leads: CSV, JSON Lines or Parquet; a lead_id column."),
]
EventsOpt = Annotated[
    Path | None,
    typer.Option(
        *spellings("events"),
        help="Events: CSV, JSON Lines or Parquet; lead_id, event, timestamp, properties.",
    ),
]
SegmentOpt = Annotated[
    Path | None,
    typer.Option(
        *spellings("segment"),
        help="Segment messages (identify/group/track/page) as JSON Lines, instead of --leads/--events.",
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(*spellings("as_of"), help="Score at this instant (ISO 8601; default: now, UTC)."),
]
SkipOpt = Annotated[
    bool,
    typer.Option(
        *spellings("skip_bad_rows"),
        help="Skip rows that cannot be read (and count them) instead of stopping.",
    ),
]
IdColumnOpt = Annotated[
    str | None,
    typer.Option(
        *spellings("id_column"),
        help="The leads file's id column, if it is not lead_id (e.g. --id-column 'Prospect ID').",
    ),
]
EventColumnsOpt = Annotated[
    str | None,
    typer.Option(
        *spellings("event_columns"),
        help="The events file's columns, if not lead_id, event, timestamp, properties "
        "(e.g. lead_id=Lead,event=Activity,timestamp=At).",
    ),
]


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="LEADSCORE_DATABASE_URL",
        help="Default: sqlite:///leadscore.db (./leadscore.db).",
    ),
]


def main() -> None:
    """Entry point: run the app and turn every error into a message, never a traceback."""
    try:
        from .help import polish

        rc = polish(typer.main.get_command(app)).main(prog_name="leadscore", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except LeadscoreError as e:
        err.print(f"Error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:  # a bug: say so plainly, show details only on request
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # Click's usage errors
            e.show()
            sys.exit(e.exit_code)
        if _debug:
            raise
        err.print(
            f"Error: unexpected {type(e).__name__}: {e}\n"
            "This is a bug in leadscore; run again with --debug for details and report it.",
            markup=False,
        )
        sys.exit(70)


# the commands register themselves on ``app``
for _area in (
    "batch",
    "analytics",
    "handoff",
    "sales",
    "reports",
    "service",
    "privacy",
):  # in the order --help lists them
    importlib.import_module(f"{__name__}.{_area}")
