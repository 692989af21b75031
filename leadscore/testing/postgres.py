"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks.

It uses the PostgreSQL server binaries found on PATH or under /usr/lib/postgresql/*/bin
(Debian's ``postgresql`` package). When the process runs as root, the server runs as the
``postgres`` system user, as PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]


class PostgresUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries were not found (pg_ctl). Install them, e.g. "
        "`apt-get install postgresql`, or set LEADSCORE_TEST_POSTGRES_URL to a server you run."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """Start with ``start()``; ``url(db)`` gives a connection URL; ``stop()`` removes everything."""

    port: int = 0
    datadir: Path | None = None
    #: more server settings, e.g. ``-c synchronous_commit=on``
    extra: str = ""
    _as_user: list[str] | None = None
    _bin: Path | None = None
    _opts: str = ""

    def start(self) -> PostgresServer:
        self._bin = find_bin_dir()
        self.port = self.port or _free_port()
        root = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
        self.datadir = root / "data"
        self._as_user = []
        if os.geteuid() == 0:
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no 'postgres' user to run the server as"
                ) from None
            shutil.chown(root, "postgres")
            root.chmod(0o700)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=128MB"
        )
        self._opts = f"{opts} {self.extra}".strip()
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server again after ``halt()`` (on the same port, with the same data)."""
        assert self.datadir is not None and self._bin is not None
        self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-o",
            self._opts,
            "-l",
            str(self.datadir.parent / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def halt(self) -> None:
        """Stop the server as a crash would (``-m immediate``), keeping its data: what a
        database that disappears looks like to its clients. ``resume()`` starts it again."""
        assert self.datadir is not None and self._bin is not None
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"
        )

    def _run(self, *args: str) -> None:
        assert self._as_user is not None
        proc = subprocess.run([*self._as_user, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            log = ""
            if self.datadir is not None:
                logfile = self.datadir.parent / "server.log"
                if logfile.exists():
                    log = logfile.read_text()[-2000:]
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed: {proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def cpu_s(self) -> float:
        """CPU time (user + system) of the server so far, in seconds: the postmaster, the
        processes it runs now, and those that ended (their time is added to the postmaster's
        when it reaps them). Read from /proc; NaN where it cannot be read."""
        if self.datadir is None:
            return float("nan")
        tick = os.sysconf("SC_CLK_TCK")
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            total = _ticks(pid, children=True)
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                total += _ticks(int(child), children=False)
        except (OSError, ValueError, IndexError):
            return float("nan")
        return total / tick

    def stop(self) -> None:
        if self.datadir is None or self._bin is None:
            return
        try:
            self._run(
                str(self._bin / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"
            )
        finally:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)
            self.datadir = None


def _ticks(pid: int, *, children: bool) -> int:
    """Clock ticks of CPU a process used (and, with ``children``, those of its ended children
    it waited for); 0 for one that has just ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    used = int(fields[11]) + int(fields[12])
    return used + int(fields[13]) + int(fields[14]) if children else used


def _main(argv: list[str]) -> int:
    """``python -m leadscore.testing.postgres start|stop STATE_FILE`` (used by CI scripts).

    ``start`` starts a server, writes what ``stop`` needs to STATE_FILE and prints its URL.
    """
    import json

    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m leadscore.testing.postgres start|stop STATE_FILE")
        return 2
    state = Path(argv[1])
    if argv[0] == "start":
        server = PostgresServer().start()
        state.write_text(
            json.dumps(
                {
                    "port": server.port,
                    "datadir": str(server.datadir),
                    "bin": str(server._bin),
                    "as_user": server._as_user,
                }
            )
        )
        print(server.url())
        return 0
    data = json.loads(state.read_text())
    server = PostgresServer(
        port=data["port"],
        datadir=Path(data["datadir"]),
        _as_user=data["as_user"],
        _bin=Path(data["bin"]),
    )
    server.stop()
    state.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
