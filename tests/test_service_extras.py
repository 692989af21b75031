"""The service's parts are an extra: the batch engine runs without them, and the service's
commands say what to install when they are missing."""

from __future__ import annotations

import subprocess
import sys

SERVICE_PARTS = ("fastapi", "starlette", "pydantic", "uvicorn", "sqlalchemy", "alembic", "httpx")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_batch_engine_imports_none_of_the_service_parts() -> None:
    proc = _python(
        "import sys\n"
        "import leadscore.cli, leadscore.batch, leadscore.sql, leadscore.io, leadscore.engine\n"
        f"print(sorted(m for m in {(*SERVICE_PARTS, 'psycopg')!r} if m in sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_serve_without_the_extra_says_what_to_install() -> None:
    # as if fastapi were not installed: importing it fails
    proc = _python(
        "import sys\n"
        "sys.modules['fastapi'] = None\n"
        "sys.argv = ['leadscore', 'serve']\n"
        "from leadscore.cli import main\n"
        "main()"
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: `leadscore serve` needs the live service's parts")
    assert "(fastapi)" in proc.stderr and "pip install 'leadscore[serve]'" in proc.stderr


def test_postgresql_without_its_driver_says_what_to_install() -> None:
    proc = _python(
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.argv = ['leadscore', 'keys', 'list', '--database-url', 'postgresql://h/db']\n"
        "from leadscore.cli import main\n"
        "main()"
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "pip install 'leadscore[postgres]'" in proc.stderr
