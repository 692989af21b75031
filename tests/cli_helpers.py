"""Running `leadscore` as a user would, for the tests of the commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the model `leadscore init` writes
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"


def ls(
    *args: str,
    ok: bool = True,
    cwd: Path | str | None = None,
    stdin: str | None = None,
    columns: int = 200,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`leadscore ARGS` in a subprocess (this checkout's package, ``columns`` wide, in ``cwd``,
    ``stdin`` on its standard input); never a traceback, and (``ok``) exit 0."""
    path = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        env={**os.environ, "COLUMNS": str(columns), "PYTHONPATH": path},
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc
