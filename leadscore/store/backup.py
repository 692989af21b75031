"""Backups of the SQLite database, online: ``leadscore backup FILE`` while ``serve`` runs, and
``leadscore restore FILE`` into a database nobody has open.

A backup is SQLite's backup API in one step: it reads one consistent snapshot of the database
(in WAL mode writers go on meanwhile), so it holds every transaction committed before it began
and none half-way. It is written beside FILE, checked, synced and then renamed into place, so
FILE is never a partial copy.

A restore checks the file first (a SQLite database holding leadscore's tables at a migration
this version knows), refuses a database some process has open (a running ``serve``) and, unless
``force``, one that already exists; it copies the backup in with the same API, so the target's
write-ahead log cannot outlive the restore. PostgreSQL has its own tools (pg_dump, pg_restore):
see docs/operations.md.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from ..errors import ConfigError

__all__ = ["backup", "check_backup", "known_revisions", "restore", "sqlite_file"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_HINT = (
    "`leadscore backup` and `restore` are for the SQLite database; back up PostgreSQL with "
    "pg_dump --format=custom and restore with pg_restore (see docs/operations.md)"
)


def sqlite_file(url: str) -> Path:
    """The file of a ``sqlite:///FILE`` URL; ConfigError for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ConfigError(_PG_HINT)
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError("an in-memory SQLite database cannot be backed up or restored")
    return Path(parsed.database)


def known_revisions() -> list[str]:
    """Every migration this version of leadscore has, oldest first."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def _connect(path: Path, *, timeout: float = 10.0) -> sqlite3.Connection:
    return sqlite3.connect(str(path), timeout=timeout, isolation_level=None)


def check_backup(path: Path) -> str:
    """The migration a leadscore database file is at; ConfigError saying what is wrong else."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise ConfigError(f"{path}: not a SQLite database, so not a leadscore backup")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"alembic_version", "leads", "events"} <= tables:
            raise ConfigError(
                f"{path}: a SQLite database, but not leadscore's (no leads, events and "
                "alembic_version tables)"
            )
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        bad = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{path}: cannot be read as a SQLite database: {e}") from None
    finally:
        conn.close()
    if bad is None or bad[0] != "ok":
        raise ConfigError(f"{path}: the database is damaged ({bad[0] if bad else 'no answer'})")
    known = known_revisions()
    if row is None or row[0] not in known:
        at = row[0] if row else "none"
        raise ConfigError(
            f"{path}: leadscore database at migration {at!r}, which this version does not know "
            f"(it knows {', '.join(known)}): restore it with the leadscore version that made it"
        )
    return str(row[0])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def backup(url: str, dest: Path, *, force: bool = False) -> dict[str, Any]:
    """Copy the live SQLite database at ``url`` to ``dest`` (one consistent snapshot)."""
    source = sqlite_file(url)
    if not source.is_file():
        raise ConfigError(f"there is no database to back up at {source}")
    if dest.exists() and not force:
        raise ConfigError(f"{dest} already exists; pass --force to replace it")
    if dest.resolve() == source.resolve():
        raise ConfigError("the backup cannot be the database itself; give another FILE")
    if dest.is_dir():
        raise ConfigError(
            f"{dest} is a directory; give the backup's file name (e.g. {dest}/leadscore.db)"
        )
    if not dest.parent.is_dir():
        raise ConfigError(
            f"cannot write {dest}: there is no directory {dest.parent}; create it first"
        )
    try:
        return _backup(source, dest)
    except OSError as e:  # a directory that cannot be written, a full disk
        dest.with_name(dest.name + ".partial").unlink(missing_ok=True)
        raise ConfigError(f"cannot write {dest}: {e.strerror or e}") from None


def _backup(source: Path, dest: Path) -> dict[str, Any]:
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    src = _connect(source)
    try:
        dst = _connect(partial)
    except sqlite3.Error as e:
        src.close()
        raise ConfigError(f"cannot write {dest}: {e}") from None
    try:
        src.execute("PRAGMA busy_timeout=10000")
        src.backup(dst)  # one step: one read snapshot, writers go on (WAL)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as e:
        dst.close()
        partial.unlink(missing_ok=True)
        raise ConfigError(f"cannot back up {source}: {e}") from None
    finally:
        src.close()
    dst.close()
    try:
        revision = check_backup(partial)
    except ConfigError:
        partial.unlink(missing_ok=True)
        raise
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, dest)
    _fsync_dir(dest.parent)
    return {"file": str(dest), "bytes": dest.stat().st_size, "revision": revision}


def restore(src_file: Path, url: str, *, force: bool = False) -> dict[str, Any]:
    """Copy the backup ``src_file`` into the SQLite database at ``url``, which no process may
    have open; an existing database is replaced only with ``force``."""
    target = sqlite_file(url)  # PostgreSQL: pointed to pg_restore, whatever the file
    revision = check_backup(src_file)
    exists = target.exists() and target.stat().st_size > 0
    if exists and src_file.resolve() == target.resolve():
        raise ConfigError("the backup is the database itself; nothing to restore")
    target.parent.mkdir(parents=True, exist_ok=True)
    dst = _connect(target, timeout=0)
    try:
        # every other connection to a WAL database holds a lock this one cannot take:
        # nobody else may have the database open while it is replaced
        dst.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            dst.execute("BEGIN EXCLUSIVE")
            dst.execute("ROLLBACK")
        except sqlite3.OperationalError:
            raise ConfigError(
                f"{target} is in use (is `leadscore serve` running on it?); stop every process "
                "that has it open, then restore"
            ) from None
        if exists and not force:  # said after "in use", which no option overrides
            raise ConfigError(
                f"{target} already exists; pass --force to replace it with the backup"
            )
        src = sqlite3.connect(f"file:{src_file}?mode=ro", uri=True)
        try:
            src.backup(dst)
        finally:
            src.close()
        dst.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as e:
        raise ConfigError(f"cannot restore into {target}: {e}") from None
    finally:
        dst.close()
    return {"file": str(target), "revision": revision}
