"""Running `leadscore` as a user would, for the tests of the batch commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the model `leadscore init` writes
STARTER = ROOT / "leadscore" / "templates" / "starter.yaml"


def ls(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """`leadscore ARGS` in a subprocess, 200 columns wide; never a traceback, and (``ok``) exit
    0."""
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc
