"""A `leadscore serve` of a given checkout for the benchmarks that measure the live service
(bench/ingest.py, bench/overload.py): started on a free port, waited for until /health
answers, its CPU time and memory read from /proc, stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "leadscore" / "templates" / "starter.yaml"
LEADSCORE = [sys.executable, "-m", "leadscore"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(database_url: str, checkout: Path = ROOT) -> dict[str, str]:
    """The environment that runs ``checkout``'s leadscore, whatever is installed, on
    ``database_url``."""
    path = os.pathsep.join(x for x in (str(checkout), os.environ.get("PYTHONPATH")) if x)
    return {**os.environ, "LEADSCORE_DATABASE_URL": database_url, "PYTHONPATH": path}


class Serve:
    """`leadscore serve --model MODEL` with ``args``, in ``workdir``, until /health answers."""

    def __init__(
        self, env: dict[str, str], workdir: Path, args: list[str], log_level: str = "warning"
    ) -> None:
        self.env, self.workdir = env, workdir
        self.port = free_port()
        # a file, not a pipe nobody reads while the server runs: a full pipe would stall it
        self.log = workdir / f"serve-{self.port}.log"
        with open(self.log, "w") as log:
            self.proc = self._start(args, log_level, log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError(f"leadscore serve did not start: {self.log.read_text()[-2000:]}")

    def _start(self, args: list[str], log_level: str, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *LEADSCORE,
                "serve",
                "--model",
                str(MODEL),
                "--port",
                str(self.port),
                "--log-level",
                log_level,
                *args,
            ],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self, thread: str = "") -> float:
        """The server's CPU time so far (user + system), where /proc tells it; else NaN.
        ``thread="loop"``: its main thread's alone, the event loop's (HTTP, the ASGI app and
        routing; the threadpool's work, checking and storing, is the rest)."""
        where = f"/proc/{self.proc.pid}" + (f"/task/{self.proc.pid}" if thread == "loop" else "")
        try:
            fields = Path(f"{where}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """The server's resident memory now, in MB (0 where /proc does not tell it)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
